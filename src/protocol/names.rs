//! Steps, reasons and states: bounded sets of names that the protocol families declare.
//!
//! Each family lists its names ([`super::Family::STEPS`], `REASONS`, `STATES`); the registry
//! merges the lists, at compile time, into one table per kind with every name once (a name two
//! families share, such as `TokenValidation` or `too_many_requests`, is one entry). A value is an
//! index into its table: a byte, whatever the family, so that the history packs it and a label
//! is a table lookup. Families write their values as constants, `Step::named("SecutityPin")`,
//! checked while compiling: a name no family declares does not build.

use std::fmt;

/// Most steps every family together may declare: the history packs a step in 5 bits.
pub const MAX_STEPS: usize = 32;
/// Most reasons every family together may declare: the history packs a reason in 6 bits.
pub const MAX_REASONS: usize = 64;
/// Most states every family together may declare: the history packs a state (or none) in 2 bits.
pub const MAX_STATES: usize = 3;

/// Names merged from several lists, each name once, in the order first seen.
#[derive(Debug)]
pub struct Table<const N: usize> {
    names: [&'static str; N],
    len: usize,
}

impl<const N: usize> Table<N> {
    /// The names of `lists`, in order, each once. Fails to compile with more than `N`.
    pub const fn merge(lists: &[&[&'static str]]) -> Self {
        let mut names = [""; N];
        let mut len = 0;
        let mut l = 0;
        while l < lists.len() {
            let mut i = 0;
            while i < lists[l].len() {
                let name = lists[l][i];
                if find(&names, len, name).is_none() {
                    assert!(len < N, "more names than the history can pack");
                    names[len] = name;
                    len += 1;
                }
                i += 1;
            }
            l += 1;
        }
        Table { names, len }
    }

    /// Every name, in table order.
    pub fn names(&self) -> &[&'static str] {
        &self.names[..self.len]
    }

    /// How many names there are.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index of `name`; fails to compile (in a constant) when no family declares it.
    pub const fn index(&self, name: &str) -> u8 {
        match find(&self.names, self.len, name) {
            Some(i) => i as u8,
            None => panic!("a name no protocol family declares"),
        }
    }

    /// The index of `name`, if it is in the table (names read back from storage).
    pub fn find(&self, name: &str) -> Option<u8> {
        find(&self.names, self.len, name).map(|i| i as u8)
    }
}

const fn find(names: &[&str], len: usize, name: &str) -> Option<usize> {
    let mut i = 0;
    while i < len {
        if same(names[i], name) {
            return Some(i);
        }
        i += 1;
    }
    None
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A bounded name type over one table: `Copy`, a byte, shown and serialised as its name.
macro_rules! bounded_name {
    ($(#[$doc:meta])* $name:ident, $table:path) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u8);

        impl $name {
            /// The value called `name`; in a constant, a name no family declares does not compile.
            pub const fn named(name: &str) -> Self {
                $name($table.index(name))
            }

            /// The value called `name`, if a family declares it (names read back from storage).
            pub fn from_name(name: &str) -> Option<Self> {
                $table.find(name).map($name)
            }

            /// Its name, as every output shows it.
            pub fn as_str(self) -> &'static str {
                $table.names()[usize::from(self.0)]
            }

            /// Its place in the table: what the history packs.
            pub fn index(self) -> usize {
                usize::from(self.0)
            }

            /// The value at `index` of the table, if there is one.
            pub fn at(index: usize) -> Option<Self> {
                (index < $table.len()).then(|| $name(index as u8))
            }

            /// Every value, in table order.
            pub fn all() -> impl Iterator<Item = Self> {
                (0..$table.len()).map(|i| $name(i as u8))
            }

            /// How many values there are.
            pub const fn count() -> usize {
                $table.len()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

bounded_name!(
    /// A step of a login: a request it made (`BaseAuthentication`, `Token`…) or authprobe's own
    /// check (`TokenValidation`). Names a server invents collapse into [`Step::OTHER`], so that no
    /// output is unbounded.
    Step,
    super::STEPS
);

bounded_name!(
    /// Why a login ended as it did, normalised to a bounded set: [`Reason::NONE`] when nothing was
    /// said, [`Reason::OTHER`] for words nobody knows. The raw text is kept apart, for people.
    Reason,
    super::REASONS
);

bounded_name!(
    /// A state the server reported, for families whose answers carry one (ETNA's `State`);
    /// runs of other families have none.
    State,
    super::STATES
);

impl Step {
    /// A step name nobody knows.
    pub const OTHER: Step = Step::named("other");
}

impl Reason {
    /// Nothing was said.
    pub const NONE: Reason = Reason::named("none");
    /// Words nobody knows.
    pub const OTHER: Reason = Reason::named("other");
}

impl State {
    /// Label value: the state, or `""` for none.
    pub fn label(state: Option<State>) -> &'static str {
        state.map_or("", State::as_str)
    }

    /// The state called `label`, `""` being none; `None` for a name no family declares.
    pub fn from_label(label: &str) -> Option<Option<State>> {
        if label.is_empty() {
            return Some(None);
        }
        State::from_name(label).map(Some)
    }
}

/// Names every family shares, before any family's own.
pub(crate) const COMMON_STEPS: &[&str] = &["other"];
/// Reasons every family shares.
pub(crate) const COMMON_REASONS: &[&str] = &["none", "other"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_merge_each_name_once_in_order() {
        const T: Table<8> = Table::merge(&[&["a", "b"], &["b", "c"], &[]]);
        assert_eq!(T.names(), ["a", "b", "c"]);
        const C: u8 = T.index("c");
        assert_eq!(C, 2);
        assert_eq!(T.find("d"), None);
    }

    #[test]
    fn names_are_distinct_and_fit_their_packing() {
        for names in [super::super::STEPS.names(), super::super::REASONS.names(), super::super::STATES.names()] {
            let set: std::collections::HashSet<&&str> = names.iter().collect();
            assert_eq!(set.len(), names.len());
        }
        assert!(Step::count() <= MAX_STEPS && Reason::count() <= MAX_REASONS && State::count() <= MAX_STATES);
        for r in Reason::all() {
            assert!(r.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
            assert_eq!(Reason::from_name(r.as_str()), Some(r));
        }
        assert_eq!(State::from_label(""), Some(None));
        assert_eq!(State::label(None), "");
    }
}
