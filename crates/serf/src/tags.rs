//! Tags travel in memberlist's node meta: `0xFF` then a msgpack map of
//! strings. Meta without the magic byte is an old-style role name.

use std::collections::BTreeMap;

use gossip::msgpack::{Reader, Writer};

/// Tags of one member, sorted by key.
pub type Tags = BTreeMap<String, String>;

const TAG_MAGIC: u8 = 0xFF;

/// Node meta carrying `tags`.
pub fn encode(tags: &Tags) -> Vec<u8> {
    let mut w = Writer::new(vec![TAG_MAGIC]);
    w.map_len(tags.len() as u32);
    for (k, v) in tags {
        w.str(k);
        w.str(v);
    }
    w.into_inner()
}

/// Tags from node meta; undecodable maps give the tags read so far, as
/// Serf does.
pub fn decode(meta: &[u8]) -> Tags {
    let mut tags = Tags::new();
    match meta.split_first() {
        Some((&TAG_MAGIC, body)) => {
            let mut r = Reader::new(body);
            if let Ok(n) = r.map_len() {
                for _ in 0..n {
                    let (Ok(k), Ok(v)) = (r.str(), r.str()) else {
                        break;
                    };
                    tags.insert(k, v);
                }
            }
        }
        _ => {
            tags.insert("role".into(), String::from_utf8_lossy(meta).into_owned());
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_serf_meta() {
        // From the plain capture: tags {dc: x, role: web}.
        let meta = b"\xff\x82\xa2dc\xa1x\xa4role\xa3web";
        let tags = decode(meta);
        assert_eq!(tags.get("dc").map(String::as_str), Some("x"));
        assert_eq!(tags.get("role").map(String::as_str), Some("web"));
        assert_eq!(encode(&tags), meta.to_vec());
        assert_eq!(decode(b"\xff\x80"), Tags::new());
        assert_eq!(decode(b"db").get("role").map(String::as_str), Some("db"));
    }
}
