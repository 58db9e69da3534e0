//! Request bodies decoded as Consul decodes them: a field matches whatever
//! the case of its name, and a snake_case spelling (`tagged_addresses`)
//! matches its CamelCase field (`TaggedAddresses`).
//!
//! It works for every type at once: the JSON is parsed to a tree, and when
//! serde asks for a struct it names the struct's fields, so object keys are
//! matched to those names there. Maps (`Meta`, `Tags`) keep their keys as
//! sent.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// Decodes `bytes` into `T` with Consul's lenient field matching.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let tree: Value = serde_json::from_slice(bytes)?;
    T::deserialize(Lenient(tree))
}

/// Decodes an already-parsed JSON tree (a config file's `service` block,
/// say) the same way.
pub fn from_value<T: DeserializeOwned>(tree: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Lenient(tree))
}

/// Two field names are the same if they agree ignoring case and underscores.
fn same_field(sent: &str, field: &str) -> bool {
    let mut a = sent.chars().filter(|c| *c != '_');
    let mut b = field.chars().filter(|c| *c != '_');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

fn rename_fields(
    object: Map<String, Value>,
    fields: &'static [&'static str],
) -> Vec<(String, Lenient)> {
    object
        .into_iter()
        .map(|(key, value)| {
            let name = fields
                .iter()
                .find(|f| **f == key)
                .or_else(|| fields.iter().find(|f| same_field(&key, f)))
                .map_or(key, |f| (*f).to_owned());
            (name, Lenient(value))
        })
        .collect()
}

/// A JSON tree that matches struct fields leniently at every depth.
struct Lenient(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for Lenient {
    type Deserializer = Lenient;

    fn into_deserializer(self) -> Lenient {
        self
    }
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Lenient));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(object) => {
                let mut map =
                    MapDeserializer::new(object.into_iter().map(|(k, v)| (k, Lenient(v))));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => {
                let mut map = MapDeserializer::new(rename_fields(object, fields).into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::from_slice;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Service {
        #[serde(rename = "ID")]
        id: String,
        name: String,
        tagged_addresses: Option<HashMap<String, String>>,
        checks: Vec<Check>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Check {
        #[serde(rename = "TTL")]
        ttl: String,
        service_id: String,
    }

    #[test]
    fn matches_any_case_and_snake_case_at_every_depth() {
        let body = br#"{"id": "web1", "NAME": "web",
            "tagged_addresses": {"lan_ipv4": "10.0.0.1"},
            "checks": [{"ttl": "10s", "service_id": "web1"}]}"#;
        let service: Service = from_slice(body).unwrap();
        assert_eq!(service.id, "web1");
        assert_eq!(service.name, "web");
        let addrs = service.tagged_addresses.unwrap();
        assert_eq!(addrs["lan_ipv4"], "10.0.0.1", "map keys are left alone");
        assert_eq!(service.checks[0].service_id, "web1");
    }

    #[test]
    fn reports_type_errors() {
        assert!(from_slice::<Check>(br#"{"TTL": 5, "ServiceID": "x"}"#).is_err());
        assert!(from_slice::<Check>(b"not json").is_err());
    }
}
