//! A growable array of plain values in its own anonymous memory mapping, for the per-example
//! state.
//!
//! Why not `Vec`: the packed state is aligned to 64 bytes (one cache line per example), and
//! the system allocator grows or shrinks such over-aligned blocks by allocating a new block and
//! copying (only blocks of at most 16-byte alignment go through `realloc`, which remaps large
//! blocks in place). For a state of gigabytes that copy doubles the peak memory. A mapping of
//! its own is page-aligned, grows and shrinks with `mremap` (no copy, on Linux; elsewhere a
//! new mapping and a copy), is advised to use huge pages, and its pages can be handed back to
//! the system one range at a time. Small vectors (a minibatch's state) stay on the heap: a
//! mapping per `Accumulator.update` of 256 rows cost a third of its time in `mmap`/`munmap`.

use memmap2::MmapMut;
use rayon::prelude::*;
use std::marker::PhantomData;

/// A vector of `Copy` values (no destructors to run) in an anonymous memory mapping (on the
/// heap while small).
pub struct BigVec<T> {
    memory: Memory,
    len: usize,
    _values: PhantomData<T>,
}

/// Where the values are.
enum Memory {
    None,
    Heap(Block),
    Map(MmapMut),
}

/// `bytes` at `ptr`, allocated with [`heap_layout`] and owned.
struct Block {
    ptr: std::ptr::NonNull<u8>,
    bytes: usize,
}

// SAFETY: a `Block` owns its allocation outright (like a `Box<[u8]>`).
unsafe impl Send for Block {}
// SAFETY: shared references to a `Block` only read its fields, as for a `Box<[u8]>`.
unsafe impl Sync for Block {}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated by `Memory::resized` with this very layout, and owned here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), heap_layout(self.bytes)) };
    }
}

/// Vectors up to this size live on the heap.
const HEAP_BYTES: usize = 1 << 20;

fn heap_layout(bytes: usize) -> std::alloc::Layout {
    // 64-byte aligned (a cache line): at most 1 MiB, so it always forms a valid layout.
    std::alloc::Layout::from_size_align(bytes, 64).expect("a small layout")
}

impl Memory {
    fn bytes(&self) -> usize {
        match self {
            Memory::None => 0,
            Memory::Heap(b) => b.bytes,
            Memory::Map(map) => map.len(),
        }
    }
    fn ptr(&self) -> *const u8 {
        match self {
            Memory::None => std::ptr::null(),
            Memory::Heap(b) => b.ptr.as_ptr(),
            Memory::Map(map) => map.as_ptr(),
        }
    }
    fn ptr_mut(&mut self) -> *mut u8 {
        match self {
            Memory::None => std::ptr::null_mut(),
            Memory::Heap(b) => b.ptr.as_ptr(),
            Memory::Map(map) => map.as_mut_ptr(),
        }
    }

    /// `bytes` of memory holding this memory's first `keep` bytes.
    fn resized(self, bytes: usize, keep: usize) -> Result<Memory, AllocError> {
        if bytes <= HEAP_BYTES && !matches!(self, Memory::Map(_)) {
            // SAFETY: a non-zero size (callers ask for more than they have, or a shrink of a
            // map, which does not come here).
            let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc(heap_layout(bytes)) }).ok_or(AllocError)?;
            // SAFETY: both blocks hold at least `keep` bytes, and are distinct allocations.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr(), ptr.as_ptr(), keep) };
            return Ok(Memory::Heap(Block { ptr, bytes }));
        }
        match self {
            Memory::Map(map) => Ok(Memory::Map(resized(map, bytes, keep)?)),
            small => {
                let mut map = MmapMut::map_anon(bytes).map_err(|_| AllocError)?;
                if keep > 0 {
                    // SAFETY: `small` holds at least `keep` bytes.
                    map[..keep].copy_from_slice(unsafe { std::slice::from_raw_parts(small.ptr(), keep) });
                }
                Ok(Memory::Map(map))
            }
        }
    }
}

/// The mapping could not be made or grown.
#[derive(Debug)]
pub struct AllocError;

impl<T: Copy + Send + Sync> BigVec<T> {
    const SIZE: usize = {
        assert!(std::mem::size_of::<T>() > 0 && std::mem::align_of::<T>() <= 64);
        std::mem::size_of::<T>()
    };

    pub const fn new() -> Self {
        BigVec { memory: Memory::None, len: 0, _values: PhantomData }
    }

    /// `len` copies of `value`, written in parallel (first touch of fresh pages is most of the
    /// cost of a large state).
    pub fn filled(value: T, len: usize) -> Result<Self, AllocError> {
        let mut v = Self::new();
        v.extend_filled(value, len)?;
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.memory.bytes() / Self::SIZE
    }

    /// Makes room for at least `additional` more values (exactly that many when it must grow).
    pub fn try_reserve_exact(&mut self, additional: usize) -> Result<(), AllocError> {
        let want = self.len.checked_add(additional).ok_or(AllocError)?;
        if want <= self.capacity() {
            return Ok(());
        }
        let bytes = want.checked_mul(Self::SIZE).ok_or(AllocError)?;
        let memory = std::mem::replace(&mut self.memory, Memory::None);
        self.memory = memory.resized(bytes, self.len * Self::SIZE)?;
        self.advise_huge();
        Ok(())
    }

    /// Appends `n` copies of `value`, growing the capacity geometrically.
    pub fn extend_filled(&mut self, value: T, n: usize) -> Result<(), AllocError> {
        if self.len + n > self.capacity() {
            let grown = (self.len + n).max(self.capacity() * 3 / 2);
            self.try_reserve_exact(grown - self.len)?;
        }
        let old = self.len;
        // SAFETY: within capacity (reserved above); written before `len` covers them.
        let fresh = unsafe { std::slice::from_raw_parts_mut(self.ptr().add(old), n) };
        fresh.par_chunks_mut(1 << 16).for_each(|c| c.fill(value));
        self.len = old + n;
        Ok(())
    }

    /// Appends `n` values without writing them, so that their pages stay untouched (not
    /// resident) until the caller writes them.
    ///
    /// # Safety
    /// The new values are whatever the memory holds: zeros where it was never written, or
    /// values truncated away earlier. All-zero bytes must be a valid `T` (plain numbers), and
    /// the caller must write each new value before relying on it.
    pub unsafe fn extend_untouched(&mut self, n: usize) -> Result<(), AllocError> {
        self.try_reserve_exact(n)?;
        self.len += n;
        Ok(())
    }

    pub fn extend_from_slice(&mut self, values: &[T]) -> Result<(), AllocError> {
        if self.len + values.len() > self.capacity() {
            let grown = (self.len + values.len()).max(self.capacity() * 3 / 2);
            self.try_reserve_exact(grown - self.len)?;
        }
        // SAFETY: within capacity (reserved above); a mapping of our own never overlaps `values`.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr().add(self.len), values.len()) };
        self.len += values.len();
        Ok(())
    }

    /// Keeps the first `len` values (`T: Copy`: nothing to drop).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Hands back the pages past the last value.
    pub fn shrink_to_fit(&mut self) {
        if self.len == 0 {
            self.memory = Memory::None;
        } else if let Memory::Map(map) = &self.memory {
            let bytes = self.len * Self::SIZE;
            if bytes.next_multiple_of(crate::sys::alloc::page_size()) < map.len() {
                let Memory::Map(map) = std::mem::replace(&mut self.memory, Memory::None) else {
                    unreachable!("matched above")
                };
                self.memory = Memory::Map(resized(map, bytes, bytes).expect("shrinking a mapping needs no memory"));
            }
        }
    }

    /// A vector of `len` values `f(i)`, computed in parallel.
    pub fn from_fn(len: usize, f: impl Fn(usize) -> T + Sync) -> Result<Self, AllocError> {
        let mut v = Self::new();
        v.try_reserve_exact(len)?;
        // SAFETY: within capacity; every value is written before `len` covers them.
        let fresh = unsafe { std::slice::from_raw_parts_mut(v.ptr(), len) };
        fresh.par_iter_mut().enumerate().with_min_len(1 << 12).for_each(|(i, x)| *x = f(i));
        v.len = len;
        Ok(v)
    }

    fn ptr(&mut self) -> *mut T {
        match &mut self.memory {
            Memory::None => std::ptr::NonNull::dangling().as_ptr(),
            memory => memory.ptr_mut().cast(),
        }
    }

    fn advise_huge(&self) {
        #[cfg(target_os = "linux")]
        if let Memory::Map(map) = &self.memory {
            // A hint only (honoured when transparent huge pages are in `madvise` or `always`
            // mode). Touching fresh memory costs a page fault per 4 KiB page, on virtual
            // machines the slowest part of building a large state (0.3–4 GB/s measured here),
            // and rows land on random slots, where 4 KiB pages would make nearly every one a
            // TLB miss: 2 MiB pages cut both 512-fold.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
    }
}

/// `map` resized to `bytes`, keeping its first `keep` bytes.
fn resized(mut map: MmapMut, bytes: usize, keep: usize) -> Result<MmapMut, AllocError> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: nothing else points into the mapping (it is owned here and handed out only
        // as borrowed slices), so it may move.
        unsafe { map.remap(bytes, memmap2::RemapOptions::new().may_move(true)) }.map_err(|_| AllocError)?;
        let _ = keep;
        Ok(map)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut fresh = MmapMut::map_anon(bytes).map_err(|_| AllocError)?;
        fresh[..keep].copy_from_slice(&map[..keep]);
        drop(map);
        Ok(fresh)
    }
}

impl<T: Copy + Send + Sync> Default for BigVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Send + Sync> std::ops::Deref for BigVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.memory {
            Memory::None => &[],
            // SAFETY: 64-byte or page-aligned (so aligned for `T`), and the first `len` values
            // are initialized (every way of raising `len` writes them first, but
            // `extend_untouched`, whose caller vouches for them).
            memory => unsafe { std::slice::from_raw_parts(memory.ptr().cast(), self.len) },
        }
    }
}

impl<T: Copy + Send + Sync> std::ops::DerefMut for BigVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let len = self.len;
        match &mut self.memory {
            Memory::None => &mut [],
            // SAFETY: as in `deref`, and borrowed mutably from `self`.
            memory => unsafe { std::slice::from_raw_parts_mut(memory.ptr_mut().cast(), len) },
        }
    }
}

impl<T: Copy + Send + Sync> Clone for BigVec<T> {
    fn clone(&self) -> Self {
        let mut v = Self::new();
        v.extend_from_slice(self).expect("out of memory copying a state");
        v
    }
}

impl<T: Copy + Send + Sync + std::fmt::Debug> std::fmt::Debug for BigVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Copy + Send + Sync + PartialEq> PartialEq for BigVec<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Send + Sync> From<Vec<T>> for BigVec<T> {
    fn from(v: Vec<T>) -> Self {
        let mut b = Self::new();
        b.extend_from_slice(&v).expect("out of memory copying a state");
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Line([u64; 8]);

    #[test]
    fn grows_shrinks_and_keeps_values_aligned() {
        let mut v: BigVec<Line> = BigVec::new();
        assert!(v.is_empty() && v.capacity() == 0);
        v.extend_filled(Line([1; 8]), 3).unwrap();
        assert_eq!(v.as_ptr() as usize % 64, 0);
        for k in 0..2000u64 {
            v.extend_from_slice(&[Line([k; 8])]).unwrap();
        }
        assert!(matches!(v.memory, Memory::Heap(_)));
        v.extend_filled(Line([7; 8]), 100_000).unwrap();
        assert!(matches!(v.memory, Memory::Map(_)));
        assert_eq!(v.as_ptr() as usize % 64, 0);
        assert_eq!(v.len(), 102_003);
        assert_eq!(v[0], Line([1; 8]));
        assert_eq!(v[3 + 1999], Line([1999; 8]));
        assert_eq!(v[102_002], Line([7; 8]));
        v.truncate(2003);
        v.shrink_to_fit();
        assert!(v.capacity() >= 2003 && v.capacity() < 2003 + 4096 / 64);
        assert_eq!(v[2002], Line([1999; 8]));
        let w = v.clone();
        assert_eq!(w, v);
        v.truncate(0);
        v.shrink_to_fit();
        assert_eq!((v.len(), v.capacity()), (0, 0));
        let f = BigVec::from_fn(5000, |i| Line([i as u64; 8])).unwrap();
        assert!(f.iter().enumerate().all(|(i, x)| x.0[7] == i as u64));
        assert_eq!(BigVec::from(vec![Line([3; 8]); 4]).len(), 4);
    }
}
