//! What a writable `files` grant may hold (`max_bytes`, `max_files`), and
//! no links anywhere: enforced where the guest writes, by replacing a few
//! of `wasi:filesystem`'s functions in the linker with ones that check,
//! then call wasmtime-wasi's own.
//!
//! - A grant's use (the bytes of its files, its files and directories) is
//!   counted once, when its queue starts, and kept up to date by every
//!   write, truncation, creation and removal a guest makes; queues granting
//!   the same directory share the count. A write that would take it past
//!   `max_bytes`, or a file or directory past `max_files`, gets
//!   `insufficient-space` (ENOSPC to the guest's language); before
//!   refusing, the directory is counted again (at most once a second), so
//!   what others removed meanwhile is room again.
//! - A write past a file's end counts what it adds; an overwrite inside it
//!   counts nothing (streams track their position; two writers of one file
//!   may count its growth twice, which errs towards refusing).
//! - `symlink-at` and `link-at` are refused (`not-permitted`) in every
//!   grant: a link made inside a writable grant could lead host-side tools
//!   that later read the directory outside it.
//! - A rename between two grants gets `cross-device` (programs copy then),
//!   so that no file moves from one grant's count to another's.
//! - An attempt holds at most [`MAX_OPEN_FILES`] files open (each is a
//!   descriptor of the host's), and all guests together what the host
//!   leaves them; past either, opening gets `quota` (EDQUOT). A descriptor
//!   gives its place back when the guest drops it, or when the attempt
//!   ends.

use crate::sandbox::{Budget, JobObserver};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{
    DynOutputStream, FsError, OutputStream, Pollable, StreamError, StreamResult,
};

/// The `wasi:filesystem` interfaces whose functions are replaced, as
/// wasmtime-wasi links them.
const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// Files one attempt may hold open at once.
pub const MAX_OPEN_FILES: usize = 256;

/// How often a grant's directory may be counted again before a refusal.
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// What a directory holds, as counted: shared by every grant of it.
#[derive(Debug)]
struct Usage {
    dir: PathBuf,
    bytes: AtomicU64,
    files: AtomicU64,
    counted: Mutex<Instant>,
}

impl Usage {
    /// The usage of `dir`, shared with every grant of it so far.
    fn of(dir: &Path) -> Arc<Usage> {
        static ALL: Mutex<Vec<(PathBuf, Weak<Usage>)>> = Mutex::new(Vec::new());
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, usage)| usage.strong_count() > 0);
        if let Some(usage) = all
            .iter()
            .find(|(d, _)| *d == dir)
            .and_then(|(_, u)| u.upgrade())
        {
            return usage;
        }
        let (bytes, files) = count(&dir);
        let usage = Arc::new(Usage {
            dir: dir.clone(),
            bytes: AtomicU64::new(bytes),
            files: AtomicU64::new(files),
            counted: Mutex::new(Instant::now()),
        });
        all.push((dir, Arc::downgrade(&usage)));
        usage
    }

    /// Counts the directory again, unless it was counted within
    /// [`RECOUNT_EVERY`]; whether it did.
    fn recount(&self) -> bool {
        {
            let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
            if counted.elapsed() < RECOUNT_EVERY {
                return false;
            }
            *counted = Instant::now();
        }
        let (bytes, files) = count(&self.dir);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.files.store(files, Ordering::Relaxed);
        true
    }
}

/// The bytes of the regular files under `dir`, and its entries (files,
/// directories, anything), symbolic links not followed.
fn count(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            files += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
            }
        }
    }
    (bytes, files)
}

/// One writable grant's quota.
#[derive(Debug)]
pub struct Quota {
    usage: Arc<Usage>,
    max_bytes: u64,
    max_files: u64,
}

impl Quota {
    /// The quota of a writable grant of `dir`, its use counted now (or
    /// shared with another grant of it).
    pub fn new(dir: &Path, max_bytes: u64, max_files: u64) -> Arc<Quota> {
        Arc::new(Quota {
            usage: Usage::of(dir),
            max_bytes,
            max_files,
        })
    }

    /// Takes `n` more of `counter` within `max`, counting again once if
    /// it would not fit.
    fn take(&self, counter: &AtomicU64, n: u64, max: u64) -> bool {
        if n == 0 {
            return true;
        }
        for _ in 0..2 {
            let before = counter.fetch_add(n, Ordering::Relaxed);
            if before.saturating_add(n) <= max {
                return true;
            }
            counter.fetch_sub(n, Ordering::Relaxed);
            if !self.usage.recount() {
                break;
            }
        }
        false
    }

    fn give(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    fn grow(&self, bytes: u64) -> bool {
        self.take(&self.usage.bytes, bytes, self.max_bytes)
    }

    fn shrink(&self, bytes: u64) {
        Self::give(&self.usage.bytes, bytes);
    }

    fn add_file(&self) -> bool {
        self.take(&self.usage.files, 1, self.max_files)
    }

    fn remove_file(&self) {
        Self::give(&self.usage.files, 1);
    }

    /// An entry (its type, size and links) was removed or replaced.
    fn removed(&self, entry: (DescriptorType, u64, u64)) {
        self.shrink(freed(entry));
        self.remove_file();
    }
}

/// One attempt's quotas: each preopened grant's, and which descriptor is
/// inside which grant.
pub struct FileQuotas {
    /// Writable grants with a quota, by the guest path they are opened at.
    grants: Vec<(String, Arc<Quota>)>,
    /// Descriptors (their table index) inside a grant with a quota.
    inside: HashMap<u32, Arc<Quota>>,
    /// Descriptors the guest opened, each holding its place in the
    /// guests' descriptors.
    open: HashMap<u32, OwnedSemaphorePermit>,
    observer: Arc<dyn JobObserver>,
}

impl FileQuotas {
    /// No quotas yet; refusals are told to `observer`.
    pub(crate) fn new(observer: Arc<dyn JobObserver>) -> Self {
        FileQuotas {
            grants: Vec::new(),
            inside: HashMap::new(),
            open: HashMap::new(),
            observer,
        }
    }

    /// The grant preopened at `destination` has `quota`.
    pub(crate) fn grant(&mut self, destination: &str, quota: Arc<Quota>) {
        self.grants.push((destination.to_owned(), quota));
    }

    fn of(&self, fd: &Resource<Descriptor>) -> Option<Arc<Quota>> {
        self.inside.get(&fd.rep()).cloned()
    }

    fn set(&mut self, fd: &Resource<Descriptor>, quota: Option<Arc<Quota>>) {
        match quota {
            Some(quota) => self.inside.insert(fd.rep(), quota),
            None => self.inside.remove(&fd.rep()),
        };
    }

    fn refused(&self, budget: Budget) -> ErrorCode {
        self.observer.over_budget(budget);
        match budget {
            Budget::FileLink => ErrorCode::NotPermitted,
            Budget::OpenFiles | Budget::HostDescriptors => ErrorCode::Quota,
            _ => ErrorCode::InsufficientSpace,
        }
    }

    /// A place for one more open file, in the attempt's and the guests'.
    fn admit(&self) -> Result<OwnedSemaphorePermit, Budget> {
        if self.open.len() >= MAX_OPEN_FILES {
            return Err(Budget::OpenFiles);
        }
        super::guest_descriptors()
            .clone()
            .try_acquire_owned()
            .map_err(|_| Budget::HostDescriptors)
    }
}

/// What a store gives the replaced functions.
pub trait QuotaStore: WasiFilesystemView + Send + 'static {
    /// The attempt's quotas.
    fn file_quotas(&mut self) -> &mut FileQuotas;
}

/// Another handle on the descriptor `fd` names (a borrow).
fn again(fd: &Resource<Descriptor>) -> Resource<Descriptor> {
    Resource::new_borrow(fd.rep())
}

/// wasmtime-wasi's error, as the guest gets it (a trap if it is not one).
fn code(error: FsError) -> wasmtime::Result<ErrorCode> {
    error.downcast()
}

/// The size and link count of the file `fd` is, if it is one.
async fn file_size<S: QuotaStore>(state: &mut S, fd: &Resource<Descriptor>) -> Option<u64> {
    let stat = HostDescriptor::stat(&mut state.filesystem(), again(fd))
        .await
        .ok()?;
    (stat.type_ == DescriptorType::RegularFile).then_some(stat.size)
}

/// The type, size and link count of what `path` names under `dir`, if
/// anything (links not followed).
async fn entry_at<S: QuotaStore>(
    state: &mut S,
    dir: &Resource<Descriptor>,
    path: &str,
) -> Option<(DescriptorType, u64, u64)> {
    let stat = HostDescriptor::stat_at(
        &mut state.filesystem(),
        again(dir),
        PathFlags::empty(),
        path.to_owned(),
    )
    .await
    .ok()?;
    Some((stat.type_, stat.size, stat.link_count))
}

/// Bytes a removed entry gives back: a regular file's, unless another
/// link keeps them.
fn freed((kind, size, links): (DescriptorType, u64, u64)) -> u64 {
    if kind == DescriptorType::RegularFile && links <= 1 {
        size
    } else {
        0
    }
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// Replaces the functions the quotas and the link refusal need.
pub fn link<S: QuotaStore>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = link_replacements(linker);
    linker.allow_shadowing(false);
    result
}

fn link_replacements<S: QuotaStore>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
    let mut preopens = linker.instance(PREOPENS)?;
    preopens.func_wrap(
        "get-directories",
        |mut store: StoreContextMut<'_, S>, (): ()| {
            let state = store.data_mut();
            let dirs = preopens::Host::get_directories(&mut state.filesystem())?;
            let quotas = state.file_quotas();
            for (fd, destination) in &dirs {
                let quota = quotas
                    .grants
                    .iter()
                    .find(|(d, _)| d == destination)
                    .map(|(_, q)| q.clone());
                quotas.set(fd, quota);
            }
            Ok((dirs,))
        },
    )?;

    let mut types = linker.instance(TYPES)?;
    // A dropped descriptor gives back its place among the open files.
    types.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        |mut store: StoreContextMut<'_, S>, rep: u32| {
            let state = store.data_mut();
            let quotas = state.file_quotas();
            quotas.open.remove(&rep);
            quotas.inside.remove(&rep);
            HostDescriptor::drop(&mut state.filesystem(), Resource::new_own(rep))
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, S>,
         (fd, buffer, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let quota = state.file_quotas().of(&fd);
                let mut grown = 0;
                if let Some(quota) = &quota {
                    let size = file_size(state, &fd).await.unwrap_or(0);
                    grown = (offset.saturating_add(buffer.len() as u64)).saturating_sub(size);
                    if !quota.grow(grown) {
                        return Ok((Err(state.file_quotas().refused(Budget::FileBytes)),));
                    }
                }
                match HostDescriptor::write(&mut state.filesystem(), fd, buffer, offset).await {
                    Ok(written) => Ok((Ok(written),)),
                    Err(error) => {
                        if let Some(quota) = quota {
                            quota.shrink(grown);
                        }
                        Ok((Err(code(error)?),))
                    }
                }
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write-via-stream",
        |store: StoreContextMut<'_, S>, (fd, offset): (Resource<Descriptor>, u64)| {
            via_stream(store, fd, Some(offset))
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.append-via-stream",
        |store: StoreContextMut<'_, S>, (fd,): (Resource<Descriptor>,)| via_stream(store, fd, None),
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: StoreContextMut<'_, S>, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let quota = state.file_quotas().of(&fd);
                let before = match &quota {
                    Some(_) => file_size(state, &fd).await.unwrap_or(0),
                    None => 0,
                };
                if let Some(quota) = &quota
                    && !quota.grow(size.saturating_sub(before))
                {
                    return Ok((Err(state.file_quotas().refused(Budget::FileBytes)),));
                }
                let result = HostDescriptor::set_size(&mut state.filesystem(), fd, size).await;
                if let Some(quota) = &quota {
                    match &result {
                        Ok(()) => quota.shrink(before.saturating_sub(size)),
                        Err(_) => quota.shrink(size.saturating_sub(before)),
                    }
                }
                Ok((result.map_err(code).transpose_code()?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, S>,
         (fd, path_flags, path, open, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let place = match state.file_quotas().admit() {
                    Ok(place) => place,
                    Err(budget) => return Ok((Err(state.file_quotas().refused(budget)),)),
                };
                let quota = state.file_quotas().of(&fd);
                let (mut added, mut truncated) = (false, 0);
                if let Some(quota) = &quota
                    && open.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE)
                {
                    match entry_at(state, &fd, &path).await {
                        None if open.contains(OpenFlags::CREATE) => {
                            if !quota.add_file() {
                                return Ok((Err(state.file_quotas().refused(Budget::FileCount)),));
                            }
                            added = true;
                        }
                        Some(entry) if open.contains(OpenFlags::TRUNCATE) => {
                            truncated = freed(entry);
                        }
                        _ => {}
                    }
                }
                let opened = HostDescriptor::open_at(
                    &mut state.filesystem(),
                    again(&fd),
                    path_flags,
                    path,
                    open,
                    flags,
                )
                .await;
                match opened {
                    Ok(new) => {
                        if let Some(quota) = &quota {
                            quota.shrink(truncated);
                        }
                        let quotas = state.file_quotas();
                        quotas.set(&new, quota);
                        quotas.open.insert(new.rep(), place);
                        Ok((Ok(new),))
                    }
                    Err(error) => {
                        if let Some(quota) = quota.filter(|_| added) {
                            quota.remove_file();
                        }
                        Ok((Err(code(error)?),))
                    }
                }
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, S>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let state = store.data_mut();
                let quota = state.file_quotas().of(&fd);
                if let Some(quota) = &quota
                    && !quota.add_file()
                {
                    return Ok((Err(state.file_quotas().refused(Budget::FileCount)),));
                }
                let result =
                    HostDescriptor::create_directory_at(&mut state.filesystem(), fd, path).await;
                if let (Some(quota), Err(_)) = (&quota, &result) {
                    quota.remove_file();
                }
                Ok((result.map_err(code).transpose_code()?,))
            })
        },
    )?;
    for name in [
        "[method]descriptor.unlink-file-at",
        "[method]descriptor.remove-directory-at",
    ] {
        let directory = name.ends_with("remove-directory-at");
        types.func_wrap_async(
            name,
            move |mut store: StoreContextMut<'_, S>, (fd, path): (Resource<Descriptor>, String)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let quota = state.file_quotas().of(&fd);
                    let entry = match &quota {
                        Some(_) => entry_at(state, &fd, &path).await,
                        None => None,
                    };
                    let mut fs = state.filesystem();
                    let result = if directory {
                        HostDescriptor::remove_directory_at(&mut fs, fd, path).await
                    } else {
                        HostDescriptor::unlink_file_at(&mut fs, fd, path).await
                    };
                    if let (Some(quota), Some(entry), Ok(())) = (&quota, entry, &result) {
                        quota.removed(entry);
                    }
                    Ok((result.map_err(code).transpose_code()?,))
                })
            },
        )?;
    }
    types.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store: StoreContextMut<'_, S>,
         (fd, old_path, new_fd, new_path): (
            Resource<Descriptor>,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let (from, to) = (state.file_quotas().of(&fd), state.file_quotas().of(&new_fd));
                let same = match (&from, &to) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(&a.usage, &b.usage),
                    _ => false,
                };
                if !same {
                    return Ok((Err(ErrorCode::CrossDevice),));
                }
                let replaced = match &to {
                    Some(_) => entry_at(state, &new_fd, &new_path).await,
                    None => None,
                };
                let result = HostDescriptor::rename_at(
                    &mut state.filesystem(),
                    fd,
                    old_path,
                    new_fd,
                    new_path,
                )
                .await;
                if let (Some(quota), Some(entry), Ok(())) = (&to, replaced, &result) {
                    quota.removed(entry);
                }
                Ok((result.map_err(code).transpose_code()?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: StoreContextMut<'_, S>, (_, _, _): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                Ok((Err::<(), _>(
                    store.data_mut().file_quotas().refused(Budget::FileLink),
                ),))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store: StoreContextMut<'_, S>,
         (_, _, _, _, _): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                Ok((Err::<(), _>(
                    store.data_mut().file_quotas().refused(Budget::FileLink),
                ),))
            })
        },
    )?;
    Ok(())
}

/// A stream writing at `offset` (appending without one) into the file
/// `fd`, its growth counted when the file is inside a grant with a quota.
fn via_stream<S: QuotaStore>(
    mut store: StoreContextMut<'_, S>,
    fd: Resource<Descriptor>,
    offset: Option<u64>,
) -> Box<dyn Future<Output = Answer<Resource<DynOutputStream>>> + Send + '_> {
    Box::new(async move {
        let state = store.data_mut();
        let quota = state.file_quotas().of(&fd);
        let size = match &quota {
            Some(_) => file_size(state, &fd).await.unwrap_or(0),
            None => 0,
        };
        let opened = {
            let mut fs = state.filesystem();
            match offset {
                Some(offset) => HostDescriptor::write_via_stream(&mut fs, fd, offset),
                None => HostDescriptor::append_via_stream(&mut fs, fd),
            }
        };
        let stream = match opened {
            Ok(stream) => stream,
            Err(error) => return Ok((Err(code(error)?),)),
        };
        let Some(quota) = quota else {
            return Ok((Ok(stream),));
        };
        let observer = state.file_quotas().observer.clone();
        let table = state.filesystem().table;
        let inner = table.delete(stream)?;
        let counted: DynOutputStream = Box::new(CountedStream {
            inner,
            quota,
            position: offset.unwrap_or(size),
            end: size,
            observer,
        });
        Ok((Ok(table.push(counted)?),))
    })
}

/// `Result<(), wasmtime::Result<ErrorCode>>` as the answer's
/// `Result<(), ErrorCode>`, or the trap.
trait TransposeCode<T> {
    fn transpose_code(self) -> wasmtime::Result<Result<T, ErrorCode>>;
}

impl<T> TransposeCode<T> for Result<T, wasmtime::Result<ErrorCode>> {
    fn transpose_code(self) -> wasmtime::Result<Result<T, ErrorCode>> {
        match self {
            Ok(value) => Ok(Ok(value)),
            Err(code) => Ok(Err(code?)),
        }
    }
}

/// A file's output stream that counts what it adds past the file's end.
struct CountedStream {
    inner: DynOutputStream,
    quota: Arc<Quota>,
    /// Where the next write goes.
    position: u64,
    /// The file's end, as far as this stream knows.
    end: u64,
    observer: Arc<dyn JobObserver>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for CountedStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CountedStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let after = self.position.saturating_add(bytes.len() as u64);
        let grown = after.saturating_sub(self.end);
        if !self.quota.grow(grown) {
            self.observer.over_budget(Budget::FileBytes);
            return Err(StreamError::LastOperationFailed(
                std::io::Error::from_raw_os_error(libc::ENOSPC).into(),
            ));
        }
        if let Err(error) = self.inner.write(bytes) {
            self.quota.shrink(grown);
            return Err(error);
        }
        self.position = after;
        self.end = self.end.max(after);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}
