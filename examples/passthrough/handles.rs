//! File handles: small integers the kernel passes back with every request on an open file
//! or directory, each naming a value here until RELEASE.

/// A table of open handles; freed numbers are reused.
#[derive(Debug)]
pub(crate) struct Handles<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Handles<T> {
    /// An empty table with room for `capacity` handles before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
        }
    }

    /// Stores `value`; returns its handle.
    pub(crate) fn insert(&mut self, value: T) -> u64 {
        if let Some(i) = self.free.pop() {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(value);
                return i as u64;
            }
        }
        self.slots.push(Some(value));
        (self.slots.len() - 1) as u64
    }

    /// The value of handle `fh`.
    pub(crate) fn get(&self, fh: u64) -> Option<&T> {
        self.slots.get(usize::try_from(fh).ok()?)?.as_ref()
    }

    /// Takes handle `fh` out of the table.
    pub(crate) fn remove(&mut self, fh: u64) -> Option<T> {
        let i = usize::try_from(fh).ok()?;
        let v = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        Some(v)
    }

    /// How many handles are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes every value out (at unmount).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free.clear();
        self.slots.drain(..).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_reuse() {
        let mut h = Handles::with_capacity(1);
        let a = h.insert("a");
        let b = h.insert("b");
        assert_ne!(a, b);
        assert_eq!(h.get(a), Some(&"a"));
        assert_eq!(h.remove(a), Some("a"));
        assert_eq!(h.remove(a), None);
        assert_eq!(h.get(a), None);
        assert_eq!(h.len(), 1);
        assert_eq!(h.insert("c"), a);
        assert_eq!(h.get(99), None);
        assert_eq!(h.drain().count(), 2);
        assert_eq!(h.len(), 0);
    }
}
