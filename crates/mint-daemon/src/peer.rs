//! Who is on the other end of the socket: the kernel's word (`SO_PEERCRED`), checked against the allowed uids.
//!
//! File permissions are the first gate; this is the second, for sockets shared through a volume where the
//! mode has to let more than one uid in. Only [`check`] creates an [`AllowedPeer`], and serving a token
//! takes one, so no code path hands a token to an unchecked connection.

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// A connection whose peer uid is on the allow list.
#[derive(Debug, Clone, Copy)]
pub struct AllowedPeer {
    uid: u32,
    pid: i32,
}

impl AllowedPeer {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// Why a connection may not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("uid {uid} (pid {pid}) is not allowed to use this mintd: start mintd with --allow-uid {uid} to serve it")]
    NotAllowed { uid: u32, pid: i32 },
    #[error("the peer's credentials could not be read: {0}")]
    Unknown(String),
}

/// Ask the kernel who connected, and check the uid against `allowed`.
pub fn check(stream: &impl AsFd, allowed: &[u32]) -> Result<AllowedPeer, PeerError> {
    let cred = getsockopt(stream, PeerCredentials).map_err(|e| PeerError::Unknown(e.to_string()))?;
    let (uid, pid) = (cred.uid(), cred.pid());
    if allowed.contains(&uid) {
        Ok(AllowedPeer { uid, pid })
    } else {
        Err(PeerError::NotAllowed { uid, pid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_the_peer_and_only_allowed_uids_pass() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let me = nix::unistd::getuid().as_raw();
        let peer = check(&ours, &[me]).expect("our own uid is allowed");
        assert_eq!(peer.uid(), me);
        assert_eq!(peer.pid(), i32::try_from(std::process::id()).expect("pid"));
        let other = me.wrapping_add(4242);
        let refused = check(&ours, &[other]).expect_err("not on the list");
        assert!(matches!(refused, PeerError::NotAllowed { uid, .. } if uid == me));
        assert!(refused.to_string().contains(&format!("--allow-uid {me}")));
    }
}
