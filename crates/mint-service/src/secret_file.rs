//! Secret files (keys, PINs, tokens, credentials): readable by their owner only, unless an escape hatch
//! was given for a mounted secret that cannot be made private; the bytes read are wiped on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Who besides the owner may read a secret file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    /// Nobody: a file group or others can read is refused.
    Never,
    /// Nobody unless `flag` (named in the refusal as the way out) was `given`.
    Unless { flag: &'static str, given: bool },
}

/// Why a secret file was refused. Never carries the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{} is readable by group or others (mode {mode:04o}): run `chmod 600` on it{}",
        path.display(),
        escape_hatch.map(|flag| format!(", or pass {flag} if a mounted secret cannot be made private")).unwrap_or_default()
    )]
    Readable {
        path: PathBuf,
        mode: u32,
        escape_hatch: Option<&'static str>,
    },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not text", path.display())]
    NotText { path: PathBuf },
}

impl SecretFileError {
    fn read(path: &Path, source: std::io::Error) -> Self {
        Self::Read {
            path: path.to_owned(),
            source,
        }
    }
}

/// Refuse `path` if group or others can read it (and `readable` does not allow it).
pub fn check_private(path: &Path, readable: Readable) -> Result<(), SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|e| SecretFileError::read(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    let (allowed, escape_hatch) = match readable {
        Readable::Never => (false, None),
        Readable::Unless { flag, given } => (given, Some(flag)),
    };
    if mode & 0o077 != 0 && !allowed {
        return Err(SecretFileError::Readable {
            path: path.to_owned(),
            mode,
            escape_hatch,
        });
    }
    Ok(())
}

/// The bytes of a secret file that passed [`check_private`].
pub fn read_private(path: &Path, readable: Readable) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    check_private(path, readable)?;
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| SecretFileError::read(path, e))
}

/// A secret file's text without surrounding white space (a trailing newline is never part of a secret);
/// an empty file is refused.
pub fn read_private_text(path: &Path, readable: Readable) -> Result<Zeroizing<String>, SecretFileError> {
    let bytes = read_private(path, readable)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretFileError::NotText { path: path.to_owned() })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(SecretFileError::Empty { path: path.to_owned() });
    }
    Ok(Zeroizing::new(text.to_owned()))
}

/// The non-blank lines of a secret file, trimmed (a secret and the ones before it, during a rotation).
pub fn read_private_lines(path: &Path, readable: Readable) -> Result<Vec<Zeroizing<Vec<u8>>>, SecretFileError> {
    let bytes = read_private(path, readable)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretFileError::NotText { path: path.to_owned() })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| Zeroizing::new(line.as_bytes().to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, content: &str, mode: u32) -> PathBuf {
        let path = dir.join("secret");
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn a_file_others_can_read_is_refused_naming_the_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(dir.path(), "s3cret\n", 0o644);
        let err = read_private(&path, Readable::Never).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.ends_with("is readable by group or others (mode 0644): run `chmod 600` on it"),
            "{text}"
        );
        let hatch = Readable::Unless {
            flag: "--allow-readable-key",
            given: false,
        };
        let text = read_private(&path, hatch).expect_err("refused").to_string();
        assert!(
            text.ends_with("or pass --allow-readable-key if a mounted secret cannot be made private"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        let given = Readable::Unless {
            flag: "--allow-readable-key",
            given: true,
        };
        assert_eq!(read_private_text(&path, given).expect("allowed").as_str(), "s3cret");
    }

    #[test]
    fn text_is_trimmed_and_lines_are_kept_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(dir.path(), "  one \n\n two\n", 0o600);
        assert_eq!(
            read_private_text(&path, Readable::Never).expect("text").as_str(),
            "one \n\n two"
        );
        let lines = read_private_lines(&path, Readable::Never).expect("lines");
        assert_eq!(
            lines.iter().map(|l| l.as_slice()).collect::<Vec<_>>(),
            [&b"one"[..], b"two"]
        );
        let empty = file(dir.path(), " \n", 0o600);
        assert!(
            read_private_text(&empty, Readable::Never)
                .expect_err("empty")
                .to_string()
                .ends_with("is empty")
        );
        let missing = dir.path().join("missing");
        assert!(
            read_private(&missing, Readable::Never)
                .expect_err("missing")
                .to_string()
                .starts_with("cannot read")
        );
    }
}
