//! A clone's pack: received over gix-protocol into `.git/objects/pack`, then indexed by gix's own indexer,
//! or, when an object is bigger than [`BIG_OBJECT_THRESHOLD`], by hashing each object as it is inflated in
//! chunks, as `git index-pack` does above `core.bigFileThreshold`.
//!
//! gix's indexer inflates every object whole to hash it, and gix's fetch has no hook to index the pack
//! another way: this module receives the pack itself and hands back the refs the remote listed, from which
//! the clone writes the refs, `HEAD` and the config with no second connection.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::protocol::fetch::{Arguments, Negotiate, RefMap, Response, negotiate};
use gix_pack::data::input;

/// Objects above this size are never held whole in memory: git's `core.bigFileThreshold` default.
pub const BIG_OBJECT_THRESHOLD: u64 = 512 << 20;

/// How many bytes of an object are inflated at a time when it is hashed or written out.
const CHUNK: usize = 64 << 10;

/// The transport gix connects a remote with.
pub(super) type BoxedTransport = Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>;
pub(super) type AuthenticateResult = gix::Result<Option<gix::credentials::protocol::Outcome>>;
/// What answers the handshake's 401, as gix's connection would ask it.
pub(super) type AuthenticateFn<'a> = dyn FnMut(gix::credentials::helper::Action) -> AuthenticateResult + 'a;

/// A blob bigger than the threshold, stored whole (not as a delta) in the received pack.
#[derive(Debug, Clone)]
pub(super) struct BigBlob {
    pub(super) pack: PathBuf,
    /// Where its zlib stream starts, just behind the entry's header.
    pub(super) data_offset: u64,
    pub(super) size: u64,
}

/// What [`fetch`] wrote into the repository.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// Blobs to stream at checkout; empty when the pack held no object above the threshold.
    pub(super) big: HashMap<ObjectId, BigBlob>,
}

/// Fetch every branch, tag and `HEAD` of `remote` into `repo` (new and empty), writing the pack and its
/// index but no ref; returns what the remote listed (`ls-refs`), each branch and tag mapped to its local
/// name as `git clone` maps it. `authenticate` answers the handshake's 401, as gix's connection would.
pub(super) fn fetch(
    repo: &gix::Repository,
    url: &gix::Url,
    configure: &mut dyn FnMut(&mut BoxedTransport) -> gix::Result<()>,
    authenticate: &mut AuthenticateFn<'_>,
    threshold: u64,
    should_interrupt: &AtomicBool,
) -> gix::Result<(RefMap, Received)> {
    let remote = repo.remote_at(url.clone())?;
    let mut connection = remote.connect(gix::remote::Direction::Fetch)?;
    let transport = connection.transport_mut();
    configure(transport)?;
    let url_bytes = url.to_bstring();
    if let Some(options) = repo.transport_options(url_bytes.as_slice(), None)? {
        transport
            .configure(&*options)
            .map_err(|e| gix::Error::from_error(io::Error::other(e)))?;
    }
    let mut progress = gix::progress::Discard;
    let mut handshake = gix::protocol::handshake(
        &mut *transport,
        gix::protocol::transport::Service::UploadPack,
        authenticate,
        Vec::new(),
        &mut progress,
    )?;
    let user_agent = ("agent", Some(gix::protocol::agent(gix::env::agent())));
    let spec = |s: &str| {
        gix::refspec::parse(s.into(), gix::refspec::parse::Operation::Fetch)
            .map(|s| s.to_owned())
            .map_err(gix::Error::from_error)
    };
    // What `git clone` fetches: the branches (to their remote-tracking names), `HEAD` and all tags.
    let context = gix::protocol::fetch::refmap::init::Context {
        fetch_refspecs: vec![spec("+refs/heads/*:refs/remotes/origin/*")?],
        extra_refspecs: vec![spec("HEAD")?, spec("+refs/tags/*:refs/tags/*")?],
    };
    let ref_map = handshake
        .prepare_lsrefs_or_extract_refmap(user_agent.clone(), true, context)?
        .fetch_blocking(gix::progress::Discard, &mut *transport, false)?;

    let pack_dir = repo.objects.store_ref().path().join("pack");
    let object_hash = repo.object_hash();
    let mut received = Received::default();
    gix::protocol::fetch(
        &mut WantAll { ref_map: &ref_map },
        |pack, _progress, should_interrupt| {
            received = write_pack(pack, &pack_dir, object_hash, threshold, should_interrupt)
                .map_err(gix::Error::from_error)?;
            Ok(true)
        },
        gix::progress::Discard,
        should_interrupt,
        gix::protocol::fetch::Context {
            handshake: &mut handshake,
            transport: &mut *transport,
            user_agent,
            trace_packetlines: false,
        },
        gix::protocol::fetch::Options {
            shallow_file: repo.shallow_file()?,
            shallow: &gix::protocol::fetch::Shallow::NoChange,
            tags: gix::protocol::fetch::Tags::All,
            reject_shallow_remote: false,
        },
    )?;
    if matches!(
        handshake.server_protocol_version,
        gix::protocol::transport::Protocol::V2
    ) {
        gix::protocol::indicate_end_of_interaction(&mut *transport, false).ok();
    }
    Ok((ref_map, received))
}

/// The negotiation of a clone: nothing is local, so every advertised tip is wanted and nothing is had.
struct WantAll<'a> {
    ref_map: &'a RefMap,
}

impl Negotiate for WantAll<'_> {
    fn mark_complete_and_common_ref(&mut self) -> gix::Result<negotiate::Action> {
        if self.ref_map.mappings.iter().all(|m| m.remote.as_id().is_none()) {
            // An empty remote (at most an unborn HEAD): no pack to receive.
            return Ok(negotiate::Action::NoChange);
        }
        Ok(negotiate::Action::MustNegotiate {
            remote_ref_target_known: vec![false; self.ref_map.mappings.len()],
        })
    }

    fn add_wants(&mut self, arguments: &mut Arguments, _remote_ref_target_known: &[bool]) -> bool {
        let mut wanted = HashSet::new();
        for id in self.ref_map.mappings.iter().filter_map(|m| m.remote.as_id()) {
            if wanted.insert(id.to_owned()) {
                arguments.want(id);
            }
        }
        !wanted.is_empty()
    }

    fn one_round(
        &mut self,
        _state: &mut negotiate::one_round::State,
        _arguments: &mut Arguments,
        _previous_response: Option<&Response>,
    ) -> gix::Result<(negotiate::Round, bool)> {
        let round = negotiate::Round {
            haves_sent: 0,
            in_vain: 0,
            haves_to_send: 0,
            previous_response_had_at_least_one_in_common: false,
        };
        Ok((round, true))
    }
}

/// Copies what is read from `inner` into `copy`: the pack lands on disk as it is parsed.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Hands every byte read or consumed to the pack's hash and the current entry's crc32.
struct Checksummed<'a, R> {
    inner: R,
    pack: &'a mut gix::hash::Hasher,
    entry: crc32fast::Hasher,
    entry_bytes: u64,
}

impl<R: BufRead> Read for Checksummed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pack.update(&buf[..n]);
        self.entry.update(&buf[..n]);
        self.entry_bytes += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Checksummed<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        let buf = self
            .inner
            .fill_buf()
            .expect("the bytes just filled are returned again without reading");
        let buf = &buf[..amt];
        self.pack.update(buf);
        self.entry.update(buf);
        self.entry_bytes += buf.len() as u64;
        self.inner.consume(amt);
    }
}

/// Parse a pack stream's entries as `gix_pack::data::input::BytesToEntriesIter` does (header, offset,
/// sizes, crc32, and the checksum verified against the trailer), but holding none of an entry's bytes:
/// the compressed stream is inflated into a small buffer and dropped as it is read, where gix's
/// iterator also keeps the entry's compressed bytes, as many as an incompressible blob has.
fn read_entries(
    pack: &mut impl BufRead,
    object_hash: gix::hash::Kind,
) -> io::Result<(Vec<input::Entry>, gix_pack::data::Version)> {
    let mut pack_hash = gix::hash::hasher(object_hash);
    let mut header = [0; gix_pack::data::header::SIZE];
    pack.read_exact(&mut header)?;
    pack_hash.update(&header);
    let (version, count) =
        gix_pack::data::header::decode(&header).map_err(|e| other("the received pack's header", e))?;
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20));
    let mut measure = gix::zlib::stream::inflate::Measure::default();
    let mut offset = header.len() as u64;
    for _ in 0..count {
        let mut read = Checksummed {
            inner: &mut *pack,
            pack: &mut pack_hash,
            entry: crc32fast::Hasher::new(),
            entry_bytes: 0,
        };
        let entry = gix_pack::data::Entry::from_read(&mut read, offset, object_hash.len_in_bytes())?;
        let header_size = read.entry_bytes;
        let (decompressed_size, compressed_size) = measure.read(&mut read)?;
        if decompressed_size != entry.decompressed_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the pack entry at offset {offset} inflates to {decompressed_size} bytes, not {}",
                    entry.decompressed_size
                ),
            ));
        }
        debug_assert_eq!(read.entry_bytes, header_size + compressed_size);
        entries.push(input::Entry {
            header: entry.header,
            header_size: u16::try_from(header_size).expect("a pack entry header is at most 30 bytes"),
            pack_offset: offset,
            compressed: None,
            compressed_size,
            crc32: Some(read.entry.finalize()),
            decompressed_size,
            trailer: None,
        });
        offset += read.entry_bytes;
    }
    let mut trailer = gix::ObjectId::null(object_hash);
    pack.read_exact(trailer.as_mut_slice())?;
    let actual = pack_hash
        .try_finalize()
        .map_err(|e| other("hashing the received pack", e))?;
    if actual != trailer {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the received pack's checksum is {actual}, its trailer says {trailer}"),
        ));
    }
    if let Some(last) = entries.last_mut() {
        last.trailer = Some(trailer);
    }
    Ok((entries, version))
}

fn other(context: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{context}: {e:#}"))
}

/// Stream `pack` into a temporary file in `pack_dir` while parsing its entries ([`read_entries`]); then
/// index it and move both files into place as `pack-<checksum>.{pack,idx}`.
fn write_pack(
    pack: &mut dyn BufRead,
    pack_dir: &Path,
    object_hash: gix::hash::Kind,
    threshold: u64,
    should_interrupt: &AtomicBool,
) -> io::Result<Received> {
    let file = tempfile::Builder::new().prefix("tmp_pack_").tempfile_in(pack_dir)?;
    let mut copy = io::BufWriter::with_capacity(CHUNK, file);
    let (entries, version) = {
        let mut tee = BufReader::with_capacity(
            CHUNK,
            Tee {
                inner: pack,
                copy: &mut copy,
            },
        );
        read_entries(&mut tee, object_hash)?
    };
    let mut file = copy.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.as_file().sync_all()?;
    let Some(checksum) = entries.last().and_then(|e| e.trailer) else {
        return Ok(Received::default());
    };
    let index = tempfile::Builder::new().prefix("tmp_idx_").tempfile_in(pack_dir)?;
    let big = if entries.iter().any(|e| e.decompressed_size > threshold) {
        let mut out = io::BufWriter::with_capacity(CHUNK, index.as_file());
        let big = write_index_streaming(file.path(), &entries, checksum, threshold, &mut out)?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        big
    } else {
        let mut out = io::BufWriter::with_capacity(CHUNK, index.as_file());
        let path = file.path().to_owned();
        let outcome = gix_pack::index::write_data_iter_to_stream(
            gix_pack::index::Version::V2,
            move || {
                let data = gix_pack::data::File::at(&path, object_hash).map_err(io::Error::other)?;
                Ok((entry_slice, data))
            },
            &mut entries.into_iter().map(Ok),
            None,
            &mut gix::progress::Discard,
            &mut out,
            should_interrupt,
            object_hash,
            None,
            version,
        )
        .map_err(|e| other("indexing the received pack", e))?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        debug_assert_eq!(outcome.data_hash, checksum);
        Vec::new()
    };
    index.as_file().sync_all()?;
    let pack_path = pack_dir.join(format!("pack-{}.pack", checksum.to_hex()));
    // Read-only, as git leaves its packs.
    for f in [file.as_file_mut(), index.as_file()] {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o444))?;
    }
    file.persist(&pack_path).map_err(|e| e.error)?;
    index.persist(pack_path.with_extension("idx")).map_err(|e| e.error)?;
    Ok(Received {
        big: big
            .into_iter()
            .map(|(id, data_offset, size)| {
                let blob = BigBlob {
                    pack: pack_path.clone(),
                    data_offset,
                    size,
                };
                (id, blob)
            })
            .collect(),
    })
}

fn entry_slice(range: gix_pack::data::EntryRange, data: &gix_pack::data::File) -> Option<&[u8]> {
    data.entry_slice(range)
}

/// Inflate the zlib stream at `data_offset` of `pack` in chunks, handing each to `sink`; fails unless it
/// yields exactly `size` bytes.
pub(super) fn inflate_chunks(
    pack: &Path,
    data_offset: u64,
    size: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = std::fs::File::open(pack)?;
    file.seek(io::SeekFrom::Start(data_offset))?;
    let mut input = BufReader::with_capacity(CHUNK, file);
    let mut state = gix::zlib::Decompress::new();
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = gix::zlib::stream::inflate::read(&mut input, &mut state, &mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            break;
        }
        sink(&buf[..n])?;
    }
    if total != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the pack entry at offset {data_offset} of {} inflates to {total} bytes, not {size}",
                pack.display()
            ),
        ));
    }
    Ok(())
}

/// Write the pack index (version 2) of `pack` without holding any object above `threshold` in memory:
/// objects stored whole are hashed as they are inflated in chunks; deltas (never above the threshold when
/// git packs: it does not deltify big files) are resolved with gix's decoder. Returns the blobs above the
/// threshold with their data offsets and sizes.
fn write_index_streaming(
    pack: &Path,
    entries: &[input::Entry],
    checksum: ObjectId,
    threshold: u64,
    out: &mut dyn Write,
) -> io::Result<Vec<(ObjectId, u64, u64)>> {
    let object_hash = checksum.kind();
    let mut ids: Vec<Option<ObjectId>> = vec![None; entries.len()];
    let mut big = Vec::new();
    for (entry, id) in entries.iter().zip(&mut ids) {
        let Some(kind) = entry.header.as_kind() else { continue };
        let data_offset = entry.pack_offset + u64::from(entry.header_size);
        let mut hasher = gix::hash::hasher(object_hash);
        hasher.update(&gix::objs::encode::loose_header(kind, entry.decompressed_size));
        inflate_chunks(pack, data_offset, entry.decompressed_size, &mut |chunk| {
            hasher.update(chunk);
            Ok(())
        })?;
        let object = hasher.try_finalize().map_err(|e| other("hashing a pack entry", e))?;
        if kind == gix::objs::Kind::Blob && entry.decompressed_size > threshold {
            big.push((object, data_offset, entry.decompressed_size));
        }
        *id = Some(object);
    }

    let data = gix_pack::data::File::at(pack, object_hash).map_err(|e| other("opening the received pack", e))?;
    let mut cache = gix_pack::cache::lru::StaticLinkedList::<64>::default();
    let mut inflate = gix::zlib::Inflate::default();
    let mut buf = Vec::new();
    // A ref-delta names its base by id, known once the base is hashed: resolve in rounds until none is left.
    loop {
        let by_id: HashMap<ObjectId, u64> = entries
            .iter()
            .zip(&ids)
            .filter_map(|(e, id)| id.map(|id| (id, e.pack_offset)))
            .collect();
        let mut resolved = 0;
        let mut unresolved = 0;
        for (entry, id) in entries.iter().zip(&mut ids) {
            if id.is_some() {
                continue;
            }
            if let gix_pack::data::entry::Header::RefDelta { base_id } = &entry.header
                && !by_id.contains_key(base_id)
            {
                unresolved += 1;
                continue;
            }
            let pack_entry = data
                .entry(entry.pack_offset)
                .map_err(|e| other("reading a pack entry", e))?;
            let outcome = data
                .decode_entry(
                    pack_entry,
                    &mut buf,
                    &mut inflate,
                    &|base, _out| {
                        Ok(by_id
                            .get(base)
                            .map(|offset| data.entry(*offset))
                            .transpose()?
                            .map(gix_pack::data::decode::entry::ResolvedBase::InPack))
                    },
                    &mut cache,
                )
                .map_err(|e| other("resolving a delta in the received pack", e))?;
            *id = Some(gix::objs::compute_hash(object_hash, outcome.kind, &buf).map_err(|e| other("hashing", e))?);
            resolved += 1;
        }
        if unresolved == 0 {
            break;
        }
        if resolved == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{unresolved} deltas of the received pack have a base that is not in it"),
            ));
        }
    }

    let mut sorted: Vec<(ObjectId, u32, u64)> = entries
        .iter()
        .zip(ids)
        .map(|(e, id)| {
            let id = id.expect("every entry is hashed or the loop above failed");
            (id, e.crc32.expect("EntryDataMode::Crc32 computes it"), e.pack_offset)
        })
        .collect();
    sorted.sort_unstable_by_key(|(id, ..)| *id);
    write_index_v2(&sorted, checksum, out)?;
    Ok(big)
}

/// Git's pack index version 2: magic and version, the fan-out table, the sorted ids, their crc32s, their
/// offsets (31 bits, or an index into a table of 64-bit offsets), the pack's checksum, and the index's own.
fn write_index_v2(sorted: &[(ObjectId, u32, u64)], pack_checksum: ObjectId, out: &mut dyn Write) -> io::Result<()> {
    let mut hasher = gix::hash::hasher(pack_checksum.kind());
    let mut write = |bytes: &[u8]| -> io::Result<()> {
        hasher.update(bytes);
        out.write_all(bytes)
    };
    write(b"\xfftOc")?;
    write(&2u32.to_be_bytes())?;
    let mut fan_out = [0u32; 256];
    for (id, ..) in sorted {
        fan_out[usize::from(id.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for count in fan_out {
        total += count;
        write(&total.to_be_bytes())?;
    }
    for (id, ..) in sorted {
        write(id.as_bytes())?;
    }
    for (_, crc32, _) in sorted {
        write(&crc32.to_be_bytes())?;
    }
    let mut large = Vec::new();
    for (.., offset) in sorted {
        let small = match u32::try_from(*offset) {
            Ok(o) if o < 0x8000_0000 => o,
            _ => {
                let at = u32::try_from(large.len()).expect("fewer than 2^31 objects in a pack");
                large.push(*offset);
                0x8000_0000 | at
            }
        };
        write(&small.to_be_bytes())?;
    }
    for offset in large {
        write(&offset.to_be_bytes())?;
    }
    write(pack_checksum.as_bytes())?;
    let checksum = hasher.try_finalize().map_err(|e| other("hashing the pack index", e))?;
    out.write_all(checksum.as_bytes())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The real git, isolated from the machine's config, in `dir`: whatever its exit status.
    pub(in crate::clone) fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@example.com")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@example.com")
            .output()
            .expect("git runs")
    }

    /// The real git, isolated from the machine's config, in `dir`; it must succeed.
    pub(in crate::clone) fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
        let output = git_output(dir, args);
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// A repository with two commits of a file that changes a little (a delta), a bigger blob and a tag.
    pub(in crate::clone) fn repository(dir: &Path) {
        git(dir, &["init", "-q", "-b", "main"]);
        let lines = (0..2000).fold(String::new(), |mut lines, i| {
            use std::fmt::Write as _;
            writeln!(lines, "line {i}").expect("a String takes it");
            lines
        });
        std::fs::write(dir.join("text.txt"), &lines).expect("write");
        std::fs::create_dir(dir.join("bin")).expect("dir");
        std::fs::write(dir.join("bin/big.bin"), vec![7u8; 100_000]).expect("write");
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "one"]);
        std::fs::write(dir.join("text.txt"), format!("{lines}one more\n")).expect("write");
        git(dir, &["commit", "-q", "-am", "two"]);
        git(dir, &["tag", "-a", "-m", "a tag", "v1"]);
    }

    /// `write_pack` on a pack git made, with `threshold`: the index equals `git index-pack`'s, byte for byte.
    fn index_equals_gits(pack_objects_args: &[&str], threshold: u64) -> (tempfile::TempDir, Received) {
        let tmp = tempfile::tempdir().expect("tmp");
        repository(tmp.path());
        let pack = std::process::Command::new("git")
            .args(["pack-objects", "--revs", "--all", "--stdout"])
            .args(pack_objects_args)
            .current_dir(tmp.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("git pack-objects");
        assert!(pack.status.success());
        let gix_entries: Vec<input::Entry> = input::BytesToEntriesIter::new_from_header(
            pack.stdout.as_slice(),
            input::Mode::Verify,
            input::EntryDataMode::Crc32,
            gix::hash::Kind::Sha1,
        )
        .expect("a pack")
        .collect::<Result<_, _>>()
        .expect("entries");
        let (entries, _) = read_entries(&mut pack.stdout.as_slice(), gix::hash::Kind::Sha1).expect("entries");
        assert_eq!(entries, gix_entries, "read as gix reads them");
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).expect("dir");
        let received = write_pack(
            &mut pack.stdout.as_slice(),
            &out,
            gix::hash::Kind::Sha1,
            threshold,
            &AtomicBool::new(false),
        )
        .expect("indexed");

        let packs: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("read")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(packs.len(), 2, "a pack and its index, nothing else: {packs:?}");
        let pack_path = packs
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "pack"))
            .expect("the pack");
        assert_eq!(std::fs::read(pack_path).expect("read"), pack.stdout);
        let theirs = tmp.path().join("theirs.idx");
        git(
            tmp.path(),
            &[
                "index-pack",
                "-o",
                theirs.to_str().expect("utf8"),
                pack_path.to_str().expect("utf8"),
            ],
        );
        assert!(
            std::fs::read(pack_path.with_extension("idx")).expect("ours") == std::fs::read(&theirs).expect("theirs"),
            "the index differs from git's"
        );
        git(tmp.path(), &["verify-pack", "-v", pack_path.to_str().expect("utf8")]);
        let index =
            gix_pack::index::File::at(pack_path.with_extension("idx"), gix::hash::Kind::Sha1).expect("gix reads it");
        assert_eq!(index.num_objects() as usize, count_objects(&pack.stdout));
        (tmp, received)
    }

    #[test]
    fn a_pack_whose_checksum_is_not_its_trailer_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        repository(tmp.path());
        let mut pack = git(tmp.path(), &["pack-objects", "--revs", "--all", "--stdout"]);
        let last = pack.len() - 1;
        pack[last] ^= 1;
        let err = read_entries(&mut pack.as_slice(), gix::hash::Kind::Sha1).expect_err("refused");
        assert!(err.to_string().contains("checksum"), "{err}");
        pack[last] ^= 1;
        pack.truncate(last);
        read_entries(&mut pack.as_slice(), gix::hash::Kind::Sha1).expect_err("a short trailer is refused");
    }

    #[test]
    fn offsets_past_2_gib_go_to_the_table_of_64_bit_offsets() {
        let id = |byte: u8| ObjectId::from_bytes_or_panic(&[byte; 20]);
        let entries = [(id(1), 7, 12), (id(2), 8, 3 << 31), (id(3), 9, 5 << 32)];
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("pack-x.idx");
        let mut out = Vec::new();
        write_index_v2(&entries, id(9), &mut out).expect("written");
        std::fs::write(&path, &out).expect("write");
        let index = gix_pack::index::File::at(&path, gix::hash::Kind::Sha1).expect("gix reads it");
        for (i, (id, crc32, offset)) in entries.iter().enumerate() {
            let i = u32::try_from(i).expect("small");
            assert_eq!(index.oid_at_index(i), id.as_ref());
            assert_eq!(index.crc32_at_index(i), Some(*crc32));
            assert_eq!(index.pack_offset_at_index(i), *offset);
        }
        assert_eq!(
            index
                .verify_checksum(&mut gix::progress::Discard, &AtomicBool::new(false))
                .ok(),
            Some(index.index_checksum())
        );
    }

    fn count_objects(pack: &[u8]) -> usize {
        u32::from_be_bytes(pack[8..12].try_into().expect("4 bytes")) as usize
    }

    #[test]
    fn below_the_threshold_gix_indexes_the_pack_as_git_does() {
        let (_tmp, received) = index_equals_gits(&["--delta-base-offset"], u64::MAX);
        assert!(received.big.is_empty());
    }

    #[test]
    fn above_the_threshold_objects_are_hashed_as_they_inflate_and_the_index_is_gits() {
        let (_tmp, received) = index_equals_gits(&["--delta-base-offset"], 50_000);
        let sizes: Vec<u64> = received.big.values().map(|b| b.size).collect();
        assert_eq!(sizes, [100_000], "the one blob above 50,000 bytes");
        // Every entry through the streaming path, deltas named by offset and, below, by id.
        index_equals_gits(&["--delta-base-offset"], 0);
        index_equals_gits(&[], 0);
    }

    #[test]
    fn a_big_blob_inflates_in_chunks_to_its_content() {
        let (_tmp, received) = index_equals_gits(&[], 50_000);
        let blob = received.big.values().next().expect("one");
        let mut content = Vec::new();
        inflate_chunks(&blob.pack, blob.data_offset, blob.size, &mut |chunk| {
            assert!(chunk.len() <= CHUNK);
            content.extend_from_slice(chunk);
            Ok(())
        })
        .expect("inflated");
        assert_eq!(content, vec![7u8; 100_000]);
        let err = inflate_chunks(&blob.pack, blob.data_offset, blob.size - 1, &mut |_| Ok(())).expect_err("too long");
        assert!(err.to_string().contains("inflates to 100000 bytes, not 99999"), "{err}");
    }
}
