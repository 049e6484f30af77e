//! The probes file as written, read in two passes of serde_yaml_ng over each file, so that
//! YAML's scalars and every error's line and column are serde_yaml_ng's own:
//!
//! 1. what every target and probe has ([`RawTarget`], [`RawProbe`]: name, protocol or target,
//!    TLS, proxy, schedule, limits, labels) and the rest of the file, fields of the families
//!    passed over;
//! 2. each target's and probe's own fields, given to the family the first pass found for it
//!    (a target's `protocol:`, a probe's target's), which deserialises them with its own
//!    `deny_unknown_fields` struct ([`FamilyParts`]). A field the family does not know is kept
//!    aside as a stray, to be reported where it stands: "only for" the families that know it,
//!    else unknown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, IgnoredAny, IntoDeserializer as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::duration::serde_prom;
use crate::protocol::{DefaultFields, Kind, ProbeFields, TargetFields};

// ---------------------------------------------------------------------------------------------
// Pass 1: what every target and probe has.

/// The main file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename = "RawConfig")]
pub(super) struct RawConfig {
    #[serde(default)]
    pub defaults: RawDefaults,
    /// The embedded simulator's block: the simulator's to read and validate.
    #[serde(default, rename = "simulator")]
    _simulator: Option<IgnoredAny>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub probes: Vec<RawProbe>,
    #[serde(default)]
    pub probe_files: Vec<String>,
}

/// A file of `probe_files`: targets and probes only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename = "RawProbeFile")]
pub(super) struct RawProbeFile {
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub probes: Vec<RawProbe>,
}

/// A struct of the first pass with the limits every probe has, and `defaults:` gives them all
/// (interval, timeout, body cap, retries, lockout guard), besides its own fields.
macro_rules! with_limits {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        pub(super) struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            #[serde(default, with = "serde_prom::option")]
            pub interval: Option<Duration>,
            #[serde(default, with = "serde_prom::option")]
            pub timeout: Option<Duration>,
            pub max_body_bytes: Option<usize>,
            pub retries: Option<u32>,
            #[serde(default)]
            pub lockout_guard: RawGuard,
        }
    };
}

with_limits! {
    /// `defaults:`, the families' fields passed over.
    #[derive(Debug, Default, Deserialize)]
    RawDefaults {}
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    pub max_failures: Option<u32>,
    #[serde(default, with = "serde_prom::option")]
    pub max_backoff: Option<Duration>,
}

/// What every target has, its family's fields passed over.
#[derive(Debug, Deserialize)]
pub(super) struct RawTarget {
    pub name: String,
    pub protocol: Option<String>,
    pub tls: Option<RawTls>,
    pub proxy_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

with_limits! {
    /// What every probe has, its family's fields passed over.
    #[derive(Debug, Deserialize)]
    RawProbe {
        name: String,
        target: String,
        schedule: Option<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
}

/// The fields every target, probe and `defaults:` has, as the first pass reads them.
pub(super) fn common_fields(item: Item) -> &'static [&'static str] {
    use crate::protocol::family::field_names;
    match item {
        Item::Target => field_names::<RawTarget>(),
        Item::Probe => field_names::<RawProbe>(),
        Item::Defaults => field_names::<RawDefaults>(),
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 2: each item's own fields, by family.

/// A block of the file whose fields are split between every family and one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    Target,
    Probe,
    Defaults,
}

impl Item {
    /// The fields `kind` takes in this block.
    pub fn fields(self, kind: Kind) -> &'static [&'static str] {
        match self {
            Item::Target => kind.target_fields(),
            Item::Probe => kind.probe_fields(),
            Item::Defaults => kind.default_fields(),
        }
    }

    /// The families that take `field` in this block.
    pub fn known_by(self, field: &str) -> Vec<Kind> {
        Kind::ALL.iter().copied().filter(|k| self.fields(*k).contains(&field)).collect()
    }
}

/// Which family each target and probe of one file belongs to, as the first pass found.
#[derive(Debug, Default)]
pub(super) struct Kinds {
    pub targets: Vec<Option<Kind>>,
    pub probes: Vec<Option<Kind>>,
}

/// The families' parts of one file.
#[derive(Default)]
pub(super) struct FamilyParts {
    /// Each target's own fields (`None` without a family) and its strays.
    pub targets: Vec<(Option<Fields>, Vec<String>)>,
    /// Each probe's own fields and its strays.
    pub probes: Vec<(Option<Fields>, Vec<String>)>,
    /// The families' fields of `defaults:` (main file only).
    pub defaults: FamilyDefaults,
}

/// Deserialises a whole file for the second pass.
pub(super) struct FileSeed<'a>(pub &'a Kinds);

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = FamilyParts;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<FamilyParts, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = FamilyParts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a probes file")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FamilyParts, A::Error> {
        let mut parts = FamilyParts::default();
        // Keys and their types were checked by the first pass.
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "targets" => {
                    parts.targets = map.next_value_seed(Items { kinds: &self.0.targets, item: Item::Target })?
                }
                "probes" => parts.probes = map.next_value_seed(Items { kinds: &self.0.probes, item: Item::Probe })?,
                "defaults" => parts.defaults = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// A sequence of targets or probes.
struct Items<'a> {
    kinds: &'a [Option<Kind>],
    item: Item,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<(Option<Fields>, Vec<String>)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<(Option<Fields>, Vec<String>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let kind = self.kinds.get(out.len()).copied().flatten();
            match seq.next_element_seed(One { kind, item: self.item })? {
                Some(parsed) => out.push(parsed),
                None => return Ok(out),
            }
        }
    }
}

/// A family's fields of one target or probe.
pub(super) enum Fields {
    Target(TargetFields),
    Probe(ProbeFields),
}

/// One target or probe of a family (`None`: of no family the first pass could tell).
struct One {
    kind: Option<Kind>,
    item: Item,
}

impl<'de> DeserializeSeed<'de> for One {
    type Value = (Option<Fields>, Vec<String>);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for One {
    type Value = (Option<Fields>, Vec<String>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        // Of no family: whatever a family takes is passed over, the rest is stray.
        let own = self.kind.map_or(&[][..], |kind| self.item.fields(kind));
        let mut split = Split {
            inner: map,
            common: common_fields(self.item),
            own,
            strict: self.kind.is_some(),
            item: self.item,
            strays: Vec::new(),
        };
        let fields = match self.kind {
            Some(kind) => {
                let d = MapAccessDeserializer::new(&mut split);
                Some(match self.item {
                    Item::Target => Fields::Target(kind.target_fields_from(d)?),
                    _ => Fields::Probe(kind.probe_fields_from(d)?),
                })
            }
            None => {
                while split.next_key::<IgnoredAny>()?.is_some() {
                    split.next_value::<IgnoredAny>()?;
                }
                None
            }
        };
        Ok((fields, split.strays))
    }
}

/// A map seen through a filter: its common fields (read by the first pass) are passed over,
/// its family's own handed on, the rest kept aside as strays.
struct Split<A> {
    inner: A,
    common: &'static [&'static str],
    own: &'static [&'static str],
    /// Whether a field of another family is a stray (it is, when the item's family is known).
    strict: bool,
    item: Item,
    strays: Vec<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Split<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else { return Ok(None) };
            if self.own.contains(&key.as_str()) {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            if !self.common.contains(&key.as_str()) && (self.strict || self.item.known_by(&key).is_empty()) {
                self.strays.push(key);
            }
            self.inner.next_value::<IgnoredAny>()?;
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// The families' fields of `defaults:`, what was wrong with them, and fields no family takes.
#[derive(Default)]
pub(super) struct FamilyDefaults {
    pub fields: DefaultFields,
    /// The field (empty for the block) and the message.
    pub problems: Vec<(String, String)>,
    pub strays: Vec<String>,
}

impl<'de> Deserialize<'de> for FamilyDefaults {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The families' values, by family, kept as YAML values: a family's defaults are flags,
        // numbers and durations, which read the same from a value as from the text.
        let all: HashMap<String, serde_yaml_ng::Value> = HashMap::deserialize(d)?;
        let common = common_fields(Item::Defaults);
        let mut fields = DefaultFields::default();
        let (mut problems, mut strays) = (Vec::new(), Vec::new());
        for kind in Kind::ALL.iter().copied() {
            let own = Item::Defaults.fields(kind);
            let mut mapping = serde_yaml_ng::Mapping::new();
            let mut keys: Vec<&String> = all.keys().filter(|k| own.contains(&k.as_str())).collect();
            keys.sort();
            for key in keys {
                let one: serde_yaml_ng::Mapping = [(key.clone().into(), all[key].clone())].into_iter().collect();
                // Each field alone first, so that a problem is told at its field.
                if let Err(e) =
                    kind.default_fields_from(serde_yaml_ng::Value::Mapping(one), &mut DefaultFields::default())
                {
                    problems.push((key.clone(), e.to_string()));
                    continue;
                }
                mapping.insert(key.clone().into(), all[key].clone());
            }
            if let Err(e) = kind.default_fields_from(serde_yaml_ng::Value::Mapping(mapping), &mut fields) {
                problems.push((String::new(), e.to_string()));
            }
        }
        let mut unknown: Vec<&String> =
            all.keys().filter(|k| !common.contains(&k.as_str()) && Item::Defaults.known_by(k).is_empty()).collect();
        unknown.sort();
        strays.extend(unknown.into_iter().cloned());
        Ok(FamilyDefaults { fields, problems, strays })
    }
}
