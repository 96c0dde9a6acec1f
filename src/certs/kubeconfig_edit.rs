//! Renewing a kubeconfig's client certificate in place: only the base64 of `client-certificate-data`
//! and `client-key-data` of the current context's user is replaced; every other byte of the file —
//! comments, order, quoting, the CA data, other users — stays as it was.
//!
//! The file is not re-serialised from a YAML tree (that would reorder, re-quote and drop comments).
//! Instead the two values are found in the text: every `client-certificate-data` / `client-key-data`
//! key (plain, quoted or JSON) and the scalar after it; the one whose decoded bytes equal what the
//! YAML parser ([`Kubeconfig::parse`]) says the current user holds is the one replaced. A value that
//! cannot be found that way (split over several lines, a YAML alias, the same data under two users) is
//! refused rather than guessed. The result is parsed again and must yield the new certificate and key.
//!
//! This module never reads or writes files and never prints; key bytes appear in no error.

use std::ops::Range;
use std::path::Path;

use base64::Engine;

use super::error::CertsError;
use super::kubeconfig::{ClientCert, ClientKey, Kubeconfig};

const CERT_FIELD: &str = "client-certificate-data";
const KEY_FIELD: &str = "client-key-data";

/// `text` with the current user's embedded client certificate and key replaced by `cert_pem` and
/// `key_pem` (PEM bytes, base64-encoded here). `path` only names the file in errors.
pub fn replace_client_credentials(
    path: &Path,
    text: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Vec<u8>, CertsError> {
    let bad = |reason: String| CertsError::Kubeconfig {
        path: path.to_path_buf(),
        reason,
    };
    let parsed = Kubeconfig::parse(path, text)?;
    let ClientCert::Embedded(old_cert) = &parsed.client_cert else {
        return Err(bad(format!(
            "user {:?} refers to a certificate file instead of embedding it: not renewed in place",
            parsed.user
        )));
    };
    let ClientKey::Embedded(old_key) = &parsed.client_key else {
        return Err(bad(format!(
            "user {:?} has no embedded {KEY_FIELD}: not renewed in place",
            parsed.user
        )));
    };
    let text_str = std::str::from_utf8(text)
        .map_err(|_| bad("not a kubeconfig: not UTF-8 text".to_string()))?;
    let cert_span = unique_span(text_str, CERT_FIELD, old_cert)
        .map_err(|why| bad(format!("user {:?}: {CERT_FIELD} {why}", parsed.user)))?;
    let key_span = unique_span(text_str, KEY_FIELD, old_key.expose())
        .map_err(|why| bad(format!("user {:?}: {KEY_FIELD} {why}", parsed.user)))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut spans = [
        (cert_span, b64.encode(cert_pem)),
        (key_span, b64.encode(key_pem)),
    ];
    spans.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut at = 0;
    for (range, value) in &spans {
        out.extend_from_slice(&text[at..range.start]);
        out.extend_from_slice(value.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(&text[at..]);

    let again = Kubeconfig::parse(path, &out)?;
    let same_cert = matches!(&again.client_cert, ClientCert::Embedded(c) if c == cert_pem);
    let same_key = matches!(&again.client_key, ClientKey::Embedded(k) if k.expose() == key_pem);
    if !same_cert || !same_key || again.user != parsed.user {
        return Err(bad(
            "the edited file does not read back with the new credentials: not changed".to_string(),
        ));
    }
    Ok(out)
}

/// The byte range of the base64 value of the one `field` whose decoded value is `want`.
fn unique_span(text: &str, field: &str, want: &[u8]) -> Result<Range<usize>, &'static str> {
    let matching: Vec<Range<usize>> = values(text, field)
        .into_iter()
        .filter(|r| decode(&text[r.clone()]).as_deref() == Some(want))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("is not written as a one-line base64 scalar: cannot replace it in place"),
        _ => Err("appears more than once with the same value: cannot tell which to replace"),
    }
}

/// The byte ranges of the base64 values of every `field` key in `text` (YAML plain or quoted, JSON).
fn values(text: &str, field: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(field) {
        let start = from + pos;
        from = start + field.len();
        // A key starts a line (after indentation or a list dash), or follows `{`, `,` or a quote.
        let before = text[..start].trim_end_matches([' ', '\t']);
        let before = before.strip_suffix(['"', '\'']).unwrap_or(before);
        let before = before.trim_end_matches([' ', '\t']);
        let key_start =
            before.is_empty() || before.ends_with(['\n', '{', ',', '-']) || before.ends_with("\r");
        if !key_start {
            continue;
        }
        let mut i = from;
        if matches!(bytes.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if bytes.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let quote = match bytes.get(i) {
            Some(q @ (b'"' | b'\'')) => {
                i += 1;
                Some(*q)
            }
            _ => None,
        };
        let value_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            i += 1;
        }
        if i == value_start {
            continue;
        }
        // The scalar must end here: its closing quote, or (plain) the end of the line or of a flow
        // item. A plain scalar continued on the next line is not replaceable in place.
        let ends = match quote {
            Some(q) => bytes.get(i) == Some(&q),
            None => {
                let rest = &text[i..];
                let line_end = rest.find('\n').unwrap_or(rest.len());
                let tail = rest[..line_end].trim_end_matches('\r').trim();
                let continues = text[i + line_end..]
                    .strip_prefix('\n')
                    .and_then(|next| next.lines().next())
                    .is_some_and(|next| continues_plain_scalar(text, value_start, next));
                (tail.is_empty() || tail.starts_with(['#', ',', '}'])) && !continues
            }
        };
        if ends {
            out.push(value_start..i);
        }
    }
    out
}

/// Whether `next` (the line after a plain scalar) continues it: more indented than the key's line
/// and not a new key or list item.
fn continues_plain_scalar(text: &str, value_start: usize, next: &str) -> bool {
    let line_start = text[..value_start].rfind('\n').map_or(0, |p| p + 1);
    let key_line = &text[line_start..value_start];
    let indent = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    let t = next.trim();
    !t.is_empty()
        && !t.starts_with('#')
        && indent(next) > indent(key_line.trim_start_matches("- "))
        && !t.contains(": ")
        && !t.ends_with(':')
        && !t.starts_with("- ")
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn conf(cert: &str, key: &str) -> String {
        format!(
            "apiVersion: v1\n# managed by kubeadm\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://10.0.0.1:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubernetes-admin\n  name: kubernetes-admin@kubernetes\ncurrent-context: kubernetes-admin@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: other\n  user:\n    client-certificate-data: {other}\n    client-key-data: {other}\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {cert}   # renewed yearly\n    client-key-data: \"{key}\"\n",
            ca = b64("ca"),
            other = b64("other"),
            cert = b64(cert),
            key = b64(key),
        )
    }

    #[test]
    fn replaces_only_the_current_users_two_values() {
        let before = conf("old-cert", "old-key");
        let p = Path::new("/k/admin.conf");
        let after =
            replace_client_credentials(p, before.as_bytes(), b"new-cert!", b"new-key!").unwrap();
        let want = conf("new-cert!", "new-key!");
        assert_eq!(String::from_utf8(after).unwrap(), want);
    }

    #[test]
    fn json_kubeconfig_and_flow_style() {
        let text = format!(
            "{{\"kind\":\"Config\",\"users\":[{{\"name\":\"a\",\"user\":{{\"client-certificate-data\":\"{}\",\"client-key-data\": \"{}\"}}}}]}}",
            b64("c1"),
            b64("k1")
        );
        let out =
            replace_client_credentials(Path::new("a.json"), text.as_bytes(), b"c2", b"k2").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            text.replace(&b64("c1"), &b64("c2"))
                .replace(&b64("k1"), &b64("k2"))
        );
        let flow = format!(
            "kind: Config\nusers:\n- name: a\n  user: {{client-certificate-data: {}, client-key-data: {}}}\n",
            b64("c1"),
            b64("k1")
        );
        let out =
            replace_client_credentials(Path::new("a"), flow.as_bytes(), b"c2", b"k2").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            flow.replace(&b64("c1"), &b64("c2"))
                .replace(&b64("k1"), &b64("k2"))
        );
    }

    #[test]
    fn refuses_what_it_cannot_edit_in_place() {
        let p = Path::new("/k/kubelet.conf");
        let file_ref = "kind: Config\nusers:\n- name: n\n  user:\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n";
        let e = replace_client_credentials(p, file_ref.as_bytes(), b"c", b"k").unwrap_err();
        assert!(
            e.to_string().contains("refers to a certificate file"),
            "{e}"
        );
        // A value folded over two lines.
        let long = b64(&"x".repeat(60));
        let (a, b) = long.split_at(40);
        let folded = format!(
            "kind: Config\nusers:\n- name: n\n  user:\n    client-certificate-data: {a}\n      {b}\n    client-key-data: {}\n",
            b64("k")
        );
        let e = replace_client_credentials(p, folded.as_bytes(), b"c", b"k").unwrap_err();
        assert!(e.to_string().contains("one-line base64"), "{e}");
        // The same key data twice.
        let twice = format!(
            "kind: Config\nusers:\n- name: n\n  user:\n    client-certificate-data: {c}\n    client-key-data: {k}\n- name: m\n  user:\n    client-certificate-data: {c}\n    client-key-data: {k}\n",
            c = b64("c"),
            k = b64("secret")
        );
        let e = replace_client_credentials(p, twice.as_bytes(), b"c", b"k").unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
        assert!(!e.to_string().contains(&b64("secret")), "{e}");
    }
}
