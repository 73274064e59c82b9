//! Process hardening at start-up: no core dumps and no ptrace-style access from same-uid processes, so the
//! App key and tokens in memory cannot be read out of mintd by the code it serves.

use nix::sys::resource::{Resource, setrlimit};

/// Make the process non-dumpable and give it a zero core-size limit.
pub fn harden() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("RLIMIT_CORE: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn leaves_the_process_non_dumpable_without_core_files() {
        super::harden().expect("hardens");
        assert!(!nix::sys::prctl::get_dumpable().expect("prctl"));
        let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).expect("rlimit");
        assert_eq!((soft, hard), (0, 0));
    }
}
