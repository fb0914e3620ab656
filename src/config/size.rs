//! Byte sizes in the config: plain bytes (`268435456`) or a number with a unit (`256MiB`,
//! `10GB`, `64 KiB`, `1.5GiB`), as `humantime_serde` does for durations. Units as parse-size
//! reads them: `KiB`/`MiB`/`GiB`/`TiB` are powers of 1024, `KB`/`MB`/`GB`/`TB` powers of 1000;
//! case does not matter and the `B` may be left out. Written back (`sluice check --dump`) as
//! plain bytes.
//!
//! Use as `#[serde(with = "crate::config::size")]` on a `u64` or `usize` field.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

const USAGE: &str = "bytes, or a number with a unit: 256MiB, 10GB, 64 KiB";

/// A size as written: `Err` says why not.
pub fn parse(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s.trim()).map_err(|e| format!("`{s}` is not a size ({e}): {USAGE}"))
}

struct Size;

impl Visitor<'_> for Size {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(USAGE)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v}: a size cannot be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).map_err(E::custom)
    }
}

pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = d.deserialize_any(Size)?;
    T::try_from(n).map_err(|_| de::Error::custom(format!("{n} bytes is too large")))
}

pub fn serialize<S, T>(v: &T, s: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: Copy + TryInto<u64>,
{
    s.serialize_u64((*v).try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_bytes() {
        assert_eq!(parse("268435456"), Ok(268435456));
        assert_eq!(parse("256MiB"), Ok(256 << 20));
        assert_eq!(parse("10GB"), Ok(10_000_000_000));
        assert_eq!(parse("64 KiB"), Ok(64 << 10));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("4k"), Ok(4000));
        for bad in ["lots", "", "-1", "5 parsecs"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
