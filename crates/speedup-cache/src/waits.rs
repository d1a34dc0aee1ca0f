//! Who waits for whom: cycle detection on a wait-for graph of *computations*, not threads.
//!
//! A node is one computation of one key ([`Node`]). Its identity travels with the cache
//! handle its function receives, so a job that the function hands to rayon (`join`, `scope`,
//! `par_iter`) acts for the same computation on whatever thread runs it. An edge `a -> b`
//! means "computation `a` cannot finish before `b` does", for one of two reasons:
//!
//! - **needs**: `a` asked for `b`'s key and waits for it, or computes it inline (then `b`'s
//!   parent is `a`);
//! - **stack**: on some thread, `a`'s frame lies *below* the code that waits for (or runs)
//!   `b`. Work-stealing puts unrelated jobs on top of a frame that waits in a rayon `join`,
//!   and that frame cannot resume before everything above it returns.
//!
//! Before a caller blocks on a computation, it looks for a path back to itself (under one
//! lock, together with registering its edges, so of two callers closing a cycle the second
//! always sees it):
//!
//! - a path of **needs** edges from a computation of the same key: a genuine cycle, reported
//!   as [`Error::Cycle`](crate::Error::Cycle) with the whole chain of keys;
//! - a path that needs a **stack** edge: not a cycle of the function, but blocking would
//!   deadlock this thread's own stack. The caller computes the key itself instead (the one
//!   case where a key's body can run twice) and hands the value to the other waiters.
//!
//! A node is `done` once its computation ended; edges from or into done nodes are ignored.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::Mutex;

/// One computation of one key.
#[derive(Debug)]
pub(crate) struct Node<K> {
    id: u64,
    pub(crate) key: K,
    /// The computation that asked for this one and waits for it (inline or by claiming it).
    parent: Option<StdArc<Node<K>>>,
    done: AtomicBool,
}

impl<K> Node<K> {
    pub(crate) fn new(key: K, parent: Option<StdArc<Node<K>>>) -> StdArc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        StdArc::new(Node {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            key,
            parent,
            done: AtomicBool::new(false),
        })
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub(crate) fn parent(&self) -> Option<&StdArc<Node<K>>> {
        self.parent.as_ref()
    }
}

impl<K> Drop for Node<K> {
    /// Unlinks the chain of parents iteratively: a handle kept from the bottom of a
    /// 100,000-deep recursion would otherwise drop its ancestors recursively.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(node) = next {
            next = StdArc::into_inner(node).and_then(|mut n| n.parent.take());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Needs,
    Stack,
}

#[derive(Debug)]
struct Edge<K> {
    token: u64,
    from: StdArc<Node<K>>,
    kind: Kind,
}

/// The explicit edges (waits, claims, stack boundaries), keyed by the node they point to.
#[derive(Debug)]
pub(crate) struct Waits<K> {
    graph: Mutex<Graph<K>>,
}

#[derive(Debug)]
struct Graph<K> {
    into: HashMap<u64, Vec<Edge<K>>>,
    next_token: u64,
}

/// What a caller about to wait for a computation must do instead, if anything.
#[derive(Debug)]
pub(crate) enum Verdict<K> {
    /// Waiting is safe; the edges are registered until the registration is dropped.
    Wait(Registration),
    /// A genuine cycle: the chain of computations, from the first computation of the key
    /// to the caller (the key asked for comes next, closing it).
    Cycle(Vec<StdArc<Node<K>>>),
    /// Waiting would deadlock this thread's stack: compute the key here instead.
    RunHere,
}

/// Edges to remove once the wait is over.
#[derive(Debug)]
#[must_use]
pub(crate) struct Registration {
    tokens: Vec<(u64, u64)>,
}

impl<K> Default for Waits<K> {
    fn default() -> Self {
        Waits { graph: Mutex::new(Graph { into: HashMap::new(), next_token: 1 }) }
    }
}

impl<K: PartialEq> Waits<K> {
    /// Decides whether `me` (the caller's computation, if any) may wait for `target`, and
    /// registers the edges if so. `top` is the innermost computation on this thread's stack.
    pub(crate) fn enter(
        &self,
        me: Option<&StdArc<Node<K>>>,
        top: Option<&StdArc<Node<K>>>,
        target: &StdArc<Node<K>>,
    ) -> Verdict<K> {
        let mut graph = self.graph.lock();
        if let Some(me) = me
            && let Some(chain) = graph.search(&[me], true, |n| n.key == target.key)
        {
            return Verdict::Cycle(chain);
        }
        let starts: Vec<&StdArc<Node<K>>> = me.into_iter().chain(top).collect();
        if graph.search(&starts, false, |n| n.id == target.id).is_some() {
            return Verdict::RunHere;
        }
        let mut tokens = Vec::with_capacity(2);
        if let Some(me) = me {
            tokens.push((target.id, graph.add(target.id, me, Kind::Needs)));
        }
        if let Some(top) = top.filter(|t| me.is_none_or(|me| !StdArc::ptr_eq(me, t))) {
            tokens.push((target.id, graph.add(target.id, top, Kind::Stack)));
        }
        Verdict::Wait(Registration { tokens })
    }
}

impl<K> Waits<K> {
    /// Registers `from -> to` outside a wait (a claimed queued key, a stack boundary).
    pub(crate) fn link(&self, from: &StdArc<Node<K>>, to: &StdArc<Node<K>>, kind: Kind) -> Registration {
        let mut graph = self.graph.lock();
        let token = graph.add(to.id, from, kind);
        Registration { tokens: vec![(to.id, token)] }
    }

    /// Removes a registration's edges.
    pub(crate) fn leave(&self, registration: Registration) {
        if registration.tokens.is_empty() {
            return;
        }
        let mut graph = self.graph.lock();
        for (to, token) in registration.tokens {
            if let Entry::Occupied(mut edges) = graph.into.entry(to) {
                edges.get_mut().retain(|e| e.token != token);
                if edges.get().is_empty() {
                    edges.remove();
                }
            }
        }
    }

    /// The computation `node` ended: nothing waits for it or on its behalf any more.
    pub(crate) fn finished(node: &Node<K>) {
        node.done.store(true, Ordering::Release);
    }
}

impl<K> Graph<K> {
    fn add(&mut self, to: u64, from: &StdArc<Node<K>>, kind: Kind) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.into.entry(to).or_default().push(Edge { token, from: StdArc::clone(from), kind });
        token
    }

    /// Walks edges backwards from `starts` (breadth first) to a node `found` accepts, and
    /// returns the chain from that node forwards to the start it blocks.
    fn search(
        &self,
        starts: &[&StdArc<Node<K>>],
        needs_only: bool,
        found: impl Fn(&Node<K>) -> bool,
    ) -> Option<Vec<StdArc<Node<K>>>> {
        // id -> (node, the id of the node it blocks, towards the start; 0 at a start)
        let mut seen: HashMap<u64, (StdArc<Node<K>>, u64)> = HashMap::new();
        let mut queue = std::collections::VecDeque::new();
        for &start in starts {
            if !start.is_done() && seen.insert(start.id, (StdArc::clone(start), 0)).is_none() {
                queue.push_back(StdArc::clone(start));
            }
        }
        while let Some(node) = queue.pop_front() {
            if found(&node) {
                let mut chain = vec![StdArc::clone(&node)];
                let mut next = seen.get(&node.id).map_or(0, |(_, n)| *n);
                while next != 0 {
                    let Some((n, after)) = seen.get(&next) else { break };
                    chain.push(StdArc::clone(n));
                    next = *after;
                }
                return Some(chain);
            }
            let parent = node.parent.iter().map(|p| (p, Kind::Needs));
            let edges = self.into.get(&node.id).into_iter().flatten().map(|e| (&e.from, e.kind));
            for (pred, kind) in parent.chain(edges) {
                if pred.is_done() || (needs_only && kind != Kind::Needs) {
                    continue;
                }
                if let Entry::Vacant(slot) = seen.entry(pred.id) {
                    slot.insert((StdArc::clone(pred), node.id));
                    queue.push_back(StdArc::clone(pred));
                }
            }
        }
        None
    }
}

/// The computations running on this thread, innermost last, tagged with their cache.
type Frames = RefCell<Vec<(usize, StdArc<dyn Any + Send + Sync>)>>;

#[cfg(not(speedup_loom))]
std::thread_local!(static FRAMES: Frames = const { RefCell::new(Vec::new()) });
#[cfg(speedup_loom)]
loom::thread_local!(static FRAMES: Frames = RefCell::new(Vec::new()));

/// The innermost computation of cache `cache` on this thread.
pub(crate) fn top<K: Send + Sync + 'static>(cache: usize) -> Option<StdArc<Node<K>>> {
    FRAMES.with(|frames| {
        let frames = frames.borrow();
        let (_, node) = frames.iter().rev().find(|(c, _)| *c == cache)?;
        StdArc::clone(node).downcast::<Node<K>>().ok()
    })
}

/// Whether `node` is one of the computations running on this thread (in cache `cache`).
pub(crate) fn on_this_thread<K: Send + Sync + 'static>(cache: usize, node: &StdArc<Node<K>>) -> bool {
    FRAMES.with(|frames| {
        // From the innermost: the handle's own frame is almost always the top one.
        frames
            .borrow()
            .iter()
            .rev()
            .any(|(c, n)| *c == cache && std::ptr::addr_eq(StdArc::as_ptr(n), StdArc::as_ptr(node)))
    })
}

/// Whether more than `n` computations of cache `cache` are on this thread's stack (counting
/// from the innermost, at most `n + 1`: deep recursion must not make this linear).
#[cfg(not(speedup_loom))]
pub(crate) fn deeper_than(cache: usize, n: usize) -> bool {
    FRAMES.with(|frames| frames.borrow().iter().rev().filter(|(c, _)| *c == cache).take(n + 1).count() > n)
}

#[cfg(not(speedup_loom))]
std::thread_local!(static HELPING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

/// How many of this thread's frames wait in the cache's own helping loop (visible waits).
#[cfg(not(speedup_loom))]
pub(crate) fn helping() -> usize {
    HELPING.with(std::cell::Cell::get)
}

/// Counts a frame of this thread as waiting in the helping loop until the guard drops.
#[cfg(not(speedup_loom))]
pub(crate) fn help() -> HelpGuard {
    HELPING.with(|h| h.set(h.get() + 1));
    HelpGuard { _not_send: std::marker::PhantomData }
}

/// Ends what [`help`] started.
#[cfg(not(speedup_loom))]
#[derive(Debug)]
pub(crate) struct HelpGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

#[cfg(not(speedup_loom))]
impl Drop for HelpGuard {
    fn drop(&mut self) {
        let _ = HELPING.try_with(|h| h.set(h.get().saturating_sub(1)));
    }
}

#[cfg(not(speedup_loom))]
std::thread_local!(static WAITING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

/// How many waits for a key (of any cache) are on this thread's stack, innermost included.
#[cfg(not(speedup_loom))]
pub(crate) fn waiting() -> usize {
    WAITING.with(std::cell::Cell::get)
}

/// Counts a wait for a key on this thread's stack until the guard drops.
#[cfg(not(speedup_loom))]
pub(crate) fn wait() -> WaitGuard {
    WAITING.with(|w| w.set(w.get() + 1));
    WaitGuard { _not_send: std::marker::PhantomData }
}

/// Ends what [`wait`] started.
#[cfg(not(speedup_loom))]
#[derive(Debug)]
pub(crate) struct WaitGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

#[cfg(not(speedup_loom))]
impl Drop for WaitGuard {
    fn drop(&mut self) {
        let _ = WAITING.try_with(|w| w.set(w.get().saturating_sub(1)));
    }
}

/// Marks `node` as running on this thread until the returned guard is dropped.
pub(crate) fn push<K: Send + Sync + 'static>(cache: usize, node: &StdArc<Node<K>>) -> FrameGuard {
    let erased: StdArc<dyn Any + Send + Sync> = StdArc::<Node<K>>::clone(node);
    FRAMES.with(|frames| frames.borrow_mut().push((cache, erased)));
    FrameGuard { _not_send: std::marker::PhantomData }
}

/// Pops the frame pushed by [`push`] (frames nest, so it is always the last one).
#[derive(Debug)]
pub(crate) struct FrameGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        // `try_with`: during thread teardown the list may already be gone.
        let _ = FRAMES.try_with(|frames| frames.borrow_mut().pop());
    }
}
