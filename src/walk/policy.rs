//! The alias policy typestate: what a walk does on reaching a table
//! another (space, VA) owns. [`Refs`] reports it, [`Follow`] resolves and
//! descends it; the state machine is the same for both.

use core::fmt;

use crate::mem::PhysMem;

mod sealed {
    pub trait Sealed {}
}

/// What a walk does on reaching a table another (space, VA) owns: [`Refs`]
/// or [`Follow`]. Sealed.
pub trait AliasPolicy<'a>: Copy + sealed::Sealed {
    /// The memory aliases are resolved and followed in.
    type Mem: PhysMem + ?Sized + 'a;
    /// `None` to report aliases, `Some(mem)` to follow them in `mem`.
    fn follow_in(&self) -> Option<&'a Self::Mem>;
    /// Whether aliases are followed in the memory the walk reads (then,
    /// in frozen memory, an alias means the table its entry names).
    fn follows_walked_memory(&self) -> bool {
        false
    }
}

/// Alias policy of the references consumer: report each alias once, do not
/// descend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refs;

impl sealed::Sealed for Refs {}
impl AliasPolicy<'_> for Refs {
    type Mem = [u8];
    #[inline]
    fn follow_in(&self) -> Option<&'static [u8]> {
        None
    }
}

/// Alias policy of the follow consumer: resolve each alias in this memory
/// and descend what it resolves to. The flag says whether it is the memory
/// the walk reads.
pub struct Follow<'a, R: ?Sized>(pub(super) &'a R, pub(super) bool);

impl<R: ?Sized> Clone for Follow<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R: ?Sized> Copy for Follow<'_, R> {}
impl<R: ?Sized> fmt::Debug for Follow<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Follow")
    }
}
impl<R: ?Sized> sealed::Sealed for Follow<'_, R> {}
impl<'a, R: PhysMem + ?Sized + 'a> AliasPolicy<'a> for Follow<'a, R> {
    type Mem = R;
    #[inline]
    fn follow_in(&self) -> Option<&'a R> {
        Some(self.0)
    }
    #[inline]
    fn follows_walked_memory(&self) -> bool {
        self.1
    }
}
