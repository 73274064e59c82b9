//! The rules on what an agent may publish, shared by mintd (which enforces them) and `mint publish` (which
//! applies them first, so a refused branch is refused before anything is touched).

use crate::PullRequestInput;

pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_BODY_BYTES: usize = 60 * 1024;
pub const MAX_TICKET_CHARS: usize = 512;

/// Why `branch` (without `refs/heads/`) may not be published under `prefix`; `None` when it may.
pub fn branch_refusal(branch: &str, prefix: &str) -> Option<&'static str> {
    if !branch.starts_with(prefix) || branch.len() == prefix.len() {
        Some("outside the agent's branches")
    } else if !valid_branch(branch) {
        Some("not a valid branch name")
    } else {
        None
    }
}

/// The rules of `git check-ref-format` that matter for a branch name.
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "git's own rule refuses exactly `.lock`, case-sensitively"
)]
fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.ends_with('.')
        && !name.split('/').any(|c| c.starts_with('.'))
        && !name.bytes().any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
}

impl PullRequestInput {
    /// Check the inputs against `prefix` and the size bounds; the error is the reason to give the agent.
    pub fn check(&self, prefix: &str) -> Result<(), String> {
        if let Some(reason) = branch_refusal(&self.branch, prefix) {
            return Err(format!(
                "branch {:?}: {reason}; use a branch under {prefix}",
                self.branch
            ));
        }
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
            return Err(format!(
                "the title must be 1 to {MAX_TITLE_CHARS} characters on one line"
            ));
        }
        if self.body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
            return Err(format!("the body is over {MAX_BODY_BYTES} bytes"));
        }
        if let Some(ticket) = &self.ticket {
            let ok = !ticket.is_empty()
                && ticket.chars().count() <= MAX_TICKET_CHARS
                && !ticket.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(format!(
                    "the ticket must be an id or URL of 1 to {MAX_TICKET_CHARS} characters, without spaces"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(branch: &str, title: &str) -> PullRequestInput {
        PullRequestInput {
            branch: branch.into(),
            title: title.into(),
            body: None,
            ticket: None,
            draft: false,
        }
    }

    #[test]
    fn branches_stay_inside_the_prefix_and_follow_git_rules() {
        assert_eq!(branch_refusal("adagent/fix-1", "adagent/"), None);
        assert_eq!(branch_refusal("adagent/a/b", "adagent/"), None);
        for (bad, why) in [
            ("main", "outside"),
            ("adagent/", "outside"),
            ("adagentx", "outside"),
            ("adagent/a..b", "valid"),
            ("adagent/x.lock", "valid"),
            ("adagent/.hidden", "valid"),
            ("adagent/x y", "valid"),
            ("adagent/x:y", "valid"),
            ("adagent/x/", "valid"),
        ] {
            let reason = branch_refusal(bad, "adagent/").expect("refused");
            assert!(reason.contains(why), "{bad}: {reason}");
        }
    }

    #[test]
    fn inputs_are_held_to_the_prefix_and_bounded() {
        assert_eq!(input("adagent/fix-1", "Fix it").check("adagent/"), Ok(()));
        for (bad, why) in [
            (input("main", "x"), "use a branch under adagent/"),
            (input("adagent/", "x"), "use a branch under"),
            (input("adagent/a..b", "x"), "not a valid branch name"),
            (input("adagent/x", ""), "title"),
            (input("adagent/x", "two\nlines"), "title"),
            (input("adagent/x", &"t".repeat(300)), "title"),
            (
                PullRequestInput {
                    ticket: Some("has space".into()),
                    ..input("adagent/x", "t")
                },
                "ticket",
            ),
            (
                PullRequestInput {
                    body: Some("b".repeat(MAX_BODY_BYTES + 1)),
                    ..input("adagent/x", "t")
                },
                "body",
            ),
        ] {
            let reason = bad.check("adagent/").expect_err("refused");
            assert!(reason.contains(why), "{bad:?}: {reason}");
        }
    }
}
