//! The daemon's socket: its directory made 0700, a stale socket from a dead daemon replaced, and the
//! file appearing, mode 0600, only once the listener is ready (bound under a temporary name, then renamed).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another mintd is already serving on {}: stop it first, or choose another --socket", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket: refusing to replace it; remove it or choose another --socket", .0.display())]
    NotASocket(PathBuf),
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SocketError {
    let path = path.to_owned();
    move |source| SocketError::Io { action, path, source }
}

/// The socket file a daemon created, to remove it at the end only if it is still ours.
#[derive(Debug)]
pub struct SocketFile {
    pub path: PathBuf,
    inode: u64,
}

impl SocketFile {
    /// Remove the socket file, unless another daemon has since replaced it.
    pub fn remove(&self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Bind `path` so that it appears, ready and with its final `mode` and `group`, in one step.
pub fn bind(path: &Path, mode: u32, group: Option<u32>) -> Result<(tokio::net::UnixListener, SocketFile), SocketError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        // Private, except that whoever the socket's mode lets in may also pass through the directory.
        let group_x = if mode & 0o060 == 0 { 0 } else { 0o010 };
        let other_x = u32::from(mode & 0o006 != 0);
        let traverse = group_x | other_x;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700 | traverse)
            .create(&dir)
            .map_err(io_err("create the socket directory", &dir))?;
        // The mode given to mkdir is masked by the umask: a hardened 077 would drop the group's traverse bit
        // of a shared socket's directory. Set it as meant.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700 | traverse))
            .map_err(io_err("set the mode of the socket directory", &dir))?;
    }
    replace_stale(path)?;

    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    // The socket is created with the umask's mode; make that 0600 so it is never, even briefly, open wider.
    let old_umask = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(&staging);
    umask(old_umask);
    let listener = bound.map_err(io_err("bind", &staging))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(&staging, None, Some(gid)).map_err(io_err("change the group of", &staging))?;
    }
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("set the mode of", &staging))?;
    listener.set_nonblocking(true).map_err(io_err("configure", &staging))?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(io_err("register", &staging))?;
    let inode = std::fs::symlink_metadata(&staging)
        .map_err(io_err("inspect", &staging))?
        .ino();
    std::fs::rename(&staging, path).map_err(io_err("move the socket into place at", path))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            inode,
        },
    ))
}

/// A socket file nobody listens on is left over from a dead daemon: remove it. One with a live
/// listener, or anything that is not a socket, is left alone.
fn replace_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "replacing a stale socket left by a daemon that is gone");
            std::fs::remove_file(path).map_err(io_err("remove the stale socket", path))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("probe the existing socket", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permission bits of the directory `socket` is in.
    fn dir_mode(socket: &std::path::Path) -> u32 {
        let dir = socket.parent().expect("a directory");
        std::fs::metadata(dir).expect("dir").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn creates_a_private_directory_and_socket() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("run/mint/mint.sock");
        let (_listener, file) = bind(&path, 0o600, None).expect("binds");
        let dir_mode = dir_mode(&path);
        assert_eq!(dir_mode, 0o700);
        let meta = std::fs::symlink_metadata(&path).expect("socket");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("mint.sock")]);
        file.remove();
        assert!(!path.exists());
    }

    /// The directory's mode is set, not left to the umask: a hardened umask of 077 dropped the group's
    /// traverse bit, and a parallel test's temporary umask (bind's own, for the socket) made a private
    /// directory 0600 (CI saw both tests here fail that way).
    #[tokio::test]
    async fn the_socket_directory_gets_its_mode_whatever_the_umask() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("strict/mint.sock");
        let gid = nix::unistd::getgid().as_raw();
        let old = umask(Mode::from_bits_truncate(0o077));
        let bound = bind(&path, 0o660, Some(gid));
        umask(old);
        let (_listener, _file) = bound.expect("binds");
        let dir_mode = dir_mode(&path);
        assert_eq!(dir_mode, 0o710);
    }

    #[tokio::test]
    async fn a_shared_socket_gets_its_mode_and_group_and_a_traversable_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("shared/mint.sock");
        let gid = nix::unistd::getgid().as_raw();
        let (_listener, _file) = bind(&path, 0o660, Some(gid)).expect("binds");
        let meta = std::fs::symlink_metadata(&path).expect("socket");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        let dir_mode = dir_mode(&path);
        assert_eq!(dir_mode, 0o710);
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("mint.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
        let live = bind(&path, 0o600, None).expect("stale socket replaced");
        assert!(matches!(bind(&path, 0o600, None), Err(SocketError::InUse(_))));
        drop(live);

        let file = root.path().join("file.sock");
        std::fs::write(&file, "precious").expect("write");
        assert!(matches!(bind(&file, 0o600, None), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "precious");
    }
}
