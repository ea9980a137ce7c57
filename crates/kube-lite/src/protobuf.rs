//! Decoding of Kubernetes protobuf request bodies for the kinds kubectl creates through its typed clients
//! (`kubectl create secret|configmap|namespace|serviceaccount`) and of the DeleteOptions Helm sends. Responses are always JSON, which kubectl
//! accepts. Other kinds answer 415 so the client reports a clear error.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Content type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("truncated field".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Option<Result<(u64, Wire<'a>), String>> {
        if self.buf.is_empty() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let wire = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Wire::Fixed
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                    Wire::Bytes(self.take(len)?)
                }
                5 => {
                    self.take(4)?;
                    Wire::Fixed
                }
                other => return Err(format!("unsupported wire type {other}")),
            };
            Ok((key >> 3, wire))
        })())
    }
}

fn fields(buf: &[u8]) -> impl Iterator<Item = Result<(u64, Wire<'_>), String>> {
    let mut reader = Reader { buf };
    std::iter::from_fn(move || reader.next_field())
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string field is not UTF-8".to_string())
}

/// A map entry (key = 1, value = 2).
fn entry(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut key, mut value) = (String::new(), &[][..]);
    for field in fields(bytes) {
        match field? {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, Wire::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

fn insert_string(map: &mut Map<String, Value>, name: &str, bytes: &[u8]) -> Result<(), String> {
    let (key, value) = entry(bytes)?;
    map.entry(name).or_insert_with(|| json!({}))[key] = json!(text(value)?);
    Ok(())
}

fn insert_bytes(map: &mut Map<String, Value>, name: &str, bytes: &[u8]) -> Result<(), String> {
    let (key, value) = entry(bytes)?;
    map.entry(name).or_insert_with(|| json!({}))[key] =
        json!(base64::engine::general_purpose::STANDARD.encode(value));
    Ok(())
}

fn push_string(map: &mut Map<String, Value>, name: &str, bytes: &[u8]) -> Result<(), String> {
    let item = json!(text(bytes)?);
    match map.entry(name).or_insert_with(|| json!([])).as_array_mut() {
        Some(list) => list.push(item),
        None => return Err(format!("{name} is not a list")),
    }
    Ok(())
}

fn object_meta(bytes: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    for field in fields(bytes) {
        match field? {
            (1, Wire::Bytes(b)) => drop(meta.insert("name".into(), json!(text(b)?))),
            (2, Wire::Bytes(b)) => drop(meta.insert("generateName".into(), json!(text(b)?))),
            (3, Wire::Bytes(b)) => drop(meta.insert("namespace".into(), json!(text(b)?))),
            (6, Wire::Bytes(b)) => drop(meta.insert("resourceVersion".into(), json!(text(b)?))),
            (11, Wire::Bytes(b)) => insert_string(&mut meta, "labels", b)?,
            (12, Wire::Bytes(b)) => insert_string(&mut meta, "annotations", b)?,
            (14, Wire::Bytes(b)) => push_string(&mut meta, "finalizers", b)?,
            _ => {}
        }
    }
    Ok(Value::Object(meta))
}

fn insert_text(map: &mut Map<String, Value>, name: &str, bytes: &[u8]) -> Result<(), String> {
    map.insert(name.into(), json!(text(bytes)?));
    Ok(())
}

fn decode_kind(kind: &str, raw: &[u8]) -> Result<Value, String> {
    let mut obj = Map::new();
    for field in fields(raw) {
        let field = field?;
        match (kind, field) {
            (_, (1, Wire::Bytes(b))) => drop(obj.insert("metadata".into(), object_meta(b)?)),
            ("ConfigMap", (2, Wire::Bytes(b))) => insert_string(&mut obj, "data", b)?,
            ("ConfigMap", (3, Wire::Bytes(b))) => insert_bytes(&mut obj, "binaryData", b)?,
            ("ConfigMap", (4, Wire::Varint(v))) | ("Secret", (5, Wire::Varint(v))) => {
                drop(obj.insert("immutable".into(), json!(v != 0)))
            }
            ("Secret", (2, Wire::Bytes(b))) => insert_bytes(&mut obj, "data", b)?,
            ("Secret", (3, Wire::Bytes(b))) => drop(obj.insert("type".into(), json!(text(b)?))),
            ("Secret", (4, Wire::Bytes(b))) => insert_string(&mut obj, "stringData", b)?,
            ("Namespace", (2, Wire::Bytes(spec))) => {
                let mut spec_map = Map::new();
                for inner in fields(spec) {
                    if let (1, Wire::Bytes(b)) = inner? {
                        push_string(&mut spec_map, "finalizers", b)?;
                    }
                }
                obj.insert("spec".into(), Value::Object(spec_map));
            }
            ("ServiceAccount", (3, Wire::Bytes(reference))) => {
                let (name, _) = entry(reference)?;
                let list = obj.entry("imagePullSecrets").or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!({"name": name}));
                }
            }
            ("ServiceAccount", (4, Wire::Varint(v))) => {
                drop(obj.insert("automountServiceAccountToken".into(), json!(v != 0)))
            }
            ("DeleteOptions", (1, Wire::Varint(v))) => {
                drop(obj.insert("gracePeriodSeconds".into(), json!(v as i64)))
            }
            ("DeleteOptions", (2, Wire::Bytes(preconditions))) => {
                let mut map = Map::new();
                for inner in fields(preconditions) {
                    match inner? {
                        (1, Wire::Bytes(b)) => insert_text(&mut map, "uid", b)?,
                        (2, Wire::Bytes(b)) => insert_text(&mut map, "resourceVersion", b)?,
                        _ => {}
                    }
                }
                obj.insert("preconditions".into(), Value::Object(map));
            }
            ("DeleteOptions", (3, Wire::Varint(v))) => {
                drop(obj.insert("orphanDependents".into(), json!(v != 0)))
            }
            ("DeleteOptions", (4, Wire::Bytes(b))) => {
                insert_text(&mut obj, "propagationPolicy", b)?
            }
            ("DeleteOptions", (5, Wire::Bytes(b))) => push_string(&mut obj, "dryRun", b)?,
            ("ConfigMap" | "Secret" | "Namespace" | "ServiceAccount" | "DeleteOptions", _) => {}
            _ => {
                return Err(format!(
                    "protobuf bodies are not supported for kind {kind}; send JSON"
                ));
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Decodes a `k8s\0`-framed `runtime.Unknown` body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body lacks the k8s envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for field in fields(envelope) {
        match field? {
            (1, Wire::Bytes(type_meta)) => {
                for inner in fields(type_meta) {
                    match inner? {
                        (1, Wire::Bytes(b)) => api_version = text(b)?,
                        (2, Wire::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut obj = decode_kind(&kind, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    fn map_entry(key: &str, value: &[u8]) -> Vec<u8> {
        [field(1, key.as_bytes()), field(2, value)].concat()
    }

    #[test]
    fn decodes_delete_options_like_helm_sends() {
        let type_meta = [field(1, b"v1"), field(2, b"DeleteOptions")].concat();
        let preconditions = field(1, b"uid-1");
        let raw = [
            field(2, &preconditions),
            field(4, b"Background"),
            field(5, b"All"),
        ]
        .concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let options = decode(&body).unwrap();
        assert_eq!(options["propagationPolicy"], "Background");
        assert_eq!(options["preconditions"]["uid"], "uid-1");
        assert_eq!(options["dryRun"], json!(["All"]));
    }

    #[test]
    fn decodes_a_secret_like_kubectl_create_sends() {
        let meta = [field(1, b"creds"), field(11, &map_entry("app", b"ota"))].concat();
        let secret = [
            field(1, &meta),
            field(2, &map_entry("token", b"\x00\x01")),
            field(3, b"Opaque"),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let decoded = decode(&body).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "creds", "labels": {"app": "ota"}}, "data": {"token": "AAE="}})
        );
        let other_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let unsupported = [
            MAGIC.to_vec(),
            field(1, &other_meta),
            field(2, &field(2, b"x")),
        ]
        .concat();
        assert!(decode(&unsupported).is_err());
    }
}
