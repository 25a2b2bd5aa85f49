//! Safe wrappers over mix-dist's C++ shim (`csrc/c10d.cpp`, `csrc/nccl.cpp`): owned handles for a
//! c10d store, process group and DDP reducer, each call turning a C++ exception into [`Error::Torch`].

// The workspace denies unsafe code; this module is the one place that calls the shim, and every unsafe
// block in it says why it is sound.
#![allow(unsafe_code)]

use crate::{Error, Result};
use std::ffi::{c_char, c_int, CStr, CString};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct MixStore {
    _private: [u8; 0],
}
#[repr(C)]
struct MixGroup {
    _private: [u8; 0],
}
#[repr(C)]
struct MixReducer {
    _private: [u8; 0],
}

extern "C" {
    fn mix_dist_free_error(message: *mut c_char);
    fn mix_dist_free_bytes(value: *mut u8);
    fn mix_dist_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut MixStore,
    ) -> *mut c_char;
    fn mix_dist_store_free(s: *mut MixStore);
    fn mix_dist_store_set(
        s: *mut MixStore,
        key: *const c_char,
        value: *const u8,
        n: usize,
    ) -> *mut c_char;
    fn mix_dist_store_try_get(
        s: *mut MixStore,
        key: *const c_char,
        present: *mut c_int,
        value: *mut *mut u8,
        n: *mut usize,
    ) -> *mut c_char;
    fn mix_dist_store_add(
        s: *mut MixStore,
        key: *const c_char,
        delta: i64,
        out: *mut i64,
    ) -> *mut c_char;
    fn mix_dist_store_claim(
        s: *mut MixStore,
        key: *const c_char,
        value: *const u8,
        n: usize,
        won: *mut c_int,
    ) -> *mut c_char;
    fn mix_dist_group_new(
        s: *mut MixStore,
        rank: c_int,
        world: c_int,
        backend: c_int,
        loopback: c_int,
        timeout_ms: i64,
        out: *mut *mut MixGroup,
    ) -> *mut c_char;
    fn mix_dist_group_free(g: *mut MixGroup);
    fn mix_dist_all_reduce_sum(g: *mut MixGroup, ts: *const *mut C_tensor, n: usize)
        -> *mut c_char;
    fn mix_dist_broadcast(
        g: *mut MixGroup,
        ts: *const *mut C_tensor,
        n: usize,
        root: c_int,
    ) -> *mut c_char;
    fn mix_dist_barrier(g: *mut MixGroup) -> *mut c_char;
    fn mix_dist_all_gather_autograd(
        g: *mut MixGroup,
        input: *mut C_tensor,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn mix_dist_reducer_new(
        g: *mut MixGroup,
        ts: *const *mut C_tensor,
        n: usize,
        cap: i64,
        first_cap: i64,
        out: *mut *mut MixReducer,
    ) -> *mut c_char;
    fn mix_dist_reducer_free(r: *mut MixReducer);
    fn mix_dist_reducer_before_forward(r: *mut MixReducer) -> *mut c_char;
    fn mix_dist_reducer_before_backward(r: *mut MixReducer) -> *mut c_char;
}

/// Turns the shim's answer (null, or an owned error message) into a result.
fn check(message: *mut c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null answer is a NUL-terminated string the shim allocated with strdup; it stays valid
    // until the one call to mix_dist_free_error below, after which it is never read again.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the pointer came from the shim, which allocated it with malloc, and is freed exactly once.
    unsafe { mix_dist_free_error(message) };
    Err(Error::Torch(text))
}

fn c_string(what: &str, text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::Invalid(format!("{what} {text:?} contains a NUL byte")))
}

fn millis(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)
}

fn c_int_of(what: &str, value: usize) -> Result<c_int> {
    c_int::try_from(value).map_err(|_| Error::Invalid(format!("{what} {value} is too large")))
}

/// The tensors' C handles, which stay valid while `tensors` is borrowed.
fn handles(tensors: &[&Tensor]) -> Vec<*mut C_tensor> {
    tensors
        .iter()
        .map(|t| t.as_ptr() as *mut C_tensor)
        .collect()
}

/// A c10d `TCPStore`: the server on rank 0, a client everywhere (rank 0 included, through the server).
pub(crate) struct Store(*mut MixStore);

// SAFETY: c10d's TCPStore serialises its client operations with a mutex of its own, so one handle may be
// used from several threads; the handle is freed once, in Drop.
unsafe impl Send for Store {}
// SAFETY: as above: every method takes `&self` and the C++ object locks around each request.
unsafe impl Sync for Store {}

impl Store {
    /// Connects to (or, with `server`, serves) the store at `host:port`, retrying until `timeout`;
    /// every key is read and written under `prefix`.
    pub(crate) fn new(
        host: &str,
        port: u16,
        server: bool,
        world: usize,
        timeout: Duration,
        prefix: &str,
    ) -> Result<Self> {
        let host = c_string("host", host)?;
        let prefix = c_string("store prefix", prefix)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: `host` and `prefix` outlive the call; `out` is written by the shim only on success.
        check(unsafe {
            mix_dist_store_new(
                host.as_ptr(),
                port,
                c_int::from(server),
                c_int_of("world size", world)?,
                millis(timeout),
                prefix.as_ptr(),
                &mut out,
            )
        })?;
        Ok(Store(out))
    }

    pub(crate) fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = c_string("store key", key)?;
        // SAFETY: the handle is live (owned by self); key and value outlive the call.
        check(unsafe { mix_dist_store_set(self.0, key.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// The value of `key`, `None` when it is not set (no waiting).
    pub(crate) fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = c_string("store key", key)?;
        let (mut present, mut value, mut n) = (0, std::ptr::null_mut(), 0usize);
        // SAFETY: the handle is live; the out-pointers are valid locals.
        check(unsafe {
            mix_dist_store_try_get(self.0, key.as_ptr(), &mut present, &mut value, &mut n)
        })?;
        if present == 0 {
            return Ok(None);
        }
        // SAFETY: with `present`, the shim malloc'd `n` bytes (at least one) at `value`, which we copy
        // and then free exactly once.
        let bytes = unsafe { std::slice::from_raw_parts(value, n) }.to_vec();
        // SAFETY: see above.
        unsafe { mix_dist_free_bytes(value) };
        Ok(Some(bytes))
    }

    /// Adds `delta` to the counter `key` (0 reads it) and returns its new value.
    pub(crate) fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let key = c_string("store key", key)?;
        let mut out = 0;
        // SAFETY: the handle is live; `out` is a valid local.
        check(unsafe { mix_dist_store_add(self.0, key.as_ptr(), delta, &mut out) })?;
        Ok(out)
    }

    /// Sets `key` to `value` unless it holds something already; true when this call set it.
    pub(crate) fn claim(&self, key: &str, value: &[u8]) -> Result<bool> {
        let key = c_string("store key", key)?;
        let mut won = 0;
        // SAFETY: the handle is live; key, value and `won` outlive the call.
        check(unsafe {
            mix_dist_store_claim(self.0, key.as_ptr(), value.as_ptr(), value.len(), &mut won)
        })?;
        Ok(won != 0)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle came from mix_dist_store_new and is freed only here.
        unsafe { mix_dist_store_free(self.0) }
    }
}

/// A c10d `ProcessGroup` with one backend.
pub(crate) struct Group(*mut MixGroup);

// SAFETY: the learner uses a group from one thread at a time (the training thread); c10d's process groups
// are themselves safe to call from any thread. The handle is freed once, in Drop.
unsafe impl Send for Group {}
// SAFETY: as above; collectives are issued from the training thread only, in program order.
unsafe impl Sync for Group {}

impl Group {
    /// A process group over `store`: Gloo (`nccl = false`) or NCCL.
    pub(crate) fn new(
        store: &Store,
        rank: usize,
        world: usize,
        nccl: bool,
        loopback: bool,
        timeout: Duration,
    ) -> Result<Self> {
        let mut out = std::ptr::null_mut();
        // SAFETY: the store handle is live for the call (the group keeps its own reference to the store).
        check(unsafe {
            mix_dist_group_new(
                store.0,
                c_int_of("rank", rank)?,
                c_int_of("world size", world)?,
                c_int::from(nccl),
                c_int::from(loopback),
                millis(timeout),
                &mut out,
            )
        })?;
        Ok(Group(out))
    }

    pub(crate) fn all_reduce_sum(&self, tensors: &[&Tensor]) -> Result<()> {
        let ptrs = handles(tensors);
        // SAFETY: the group is live; the tensor handles are borrowed for the call.
        check(unsafe { mix_dist_all_reduce_sum(self.0, ptrs.as_ptr(), ptrs.len()) })
    }

    pub(crate) fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        let ptrs = handles(tensors);
        // SAFETY: the group is live; the tensor handles are borrowed for the call.
        check(unsafe {
            mix_dist_broadcast(self.0, ptrs.as_ptr(), ptrs.len(), c_int_of("root", root)?)
        })
    }

    pub(crate) fn barrier(&self) -> Result<()> {
        // SAFETY: the group is live.
        check(unsafe { mix_dist_barrier(self.0) })
    }

    /// Every rank's `tensor`, concatenated along dimension 0 in rank order, differentiably.
    pub(crate) fn all_gather(&self, tensor: &Tensor) -> Result<Tensor> {
        let mut out = std::ptr::null_mut();
        // SAFETY: the group is live and the tensor handle is borrowed for the call; on success the shim
        // hands back a new heap `at::Tensor` that nothing else owns.
        check(unsafe {
            mix_dist_all_gather_autograd(self.0, tensor.as_ptr() as *mut C_tensor, &mut out)
        })?;
        // SAFETY: `out` is that new tensor; the returned `Tensor` owns it and frees it once.
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the handle came from mix_dist_group_new and is freed only here.
        unsafe { mix_dist_group_free(self.0) }
    }
}

/// DDP's `Reducer` over a list of parameters: it registers autograd hooks on them and all-reduces their
/// gradients bucket by bucket during the backward pass.
pub(crate) struct Reducer(*mut MixReducer);

// SAFETY: the reducer is driven from the training thread; its hooks run on libtorch's autograd threads,
// which c10d's Reducer synchronises with its own mutex. Freed once, in Drop.
unsafe impl Send for Reducer {}

impl Reducer {
    pub(crate) fn new(
        group: &Group,
        params: &[&Tensor],
        cap_bytes: i64,
        first_cap_bytes: i64,
    ) -> Result<Self> {
        let ptrs = handles(params);
        let mut out = std::ptr::null_mut();
        // SAFETY: the group is live; the reducer keeps its own references to the process group and the
        // parameters (at::Tensor copies share storage), so both may be dropped independently.
        check(unsafe {
            mix_dist_reducer_new(
                group.0,
                ptrs.as_ptr(),
                ptrs.len(),
                cap_bytes,
                first_cap_bytes,
                &mut out,
            )
        })?;
        Ok(Reducer(out))
    }

    pub(crate) fn before_forward(&mut self) -> Result<()> {
        // SAFETY: the reducer is live.
        check(unsafe { mix_dist_reducer_before_forward(self.0) })
    }

    pub(crate) fn before_backward(&mut self) -> Result<()> {
        // SAFETY: the reducer is live.
        check(unsafe { mix_dist_reducer_before_backward(self.0) })
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: the handle came from mix_dist_reducer_new and is freed only here.
        unsafe { mix_dist_reducer_free(self.0) }
    }
}
