//! Hand-written matchers for rules whose anchors are common words (assignments, URLs) or whose
//! matches are long (PEM blocks), plus the validators regex rules call on a candidate.

use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::Window;

/// How far an identifier may extend around an assignment keyword (`aws_secret_access_key_id`).
pub(crate) const MAX_IDENT_AROUND: usize = 32;
/// Longest value an assignment rule looks at; longer runs are blobs, not credentials.
const MAX_VALUE_LEN: usize = 256;
/// Identifier tail, closing quote, spaces, operator, spaces, opening quote, value, terminator.
pub(crate) const ASSIGNMENT_AFTER: usize = MAX_IDENT_AROUND + 1 + 4 + 2 + 4 + 1 + MAX_VALUE_LEN + 1;
/// Longest URL scheme looked at before `://`.
pub(crate) const MAX_SCHEME_LEN: usize = 20;
/// Longest `user:password` looked at after `://`.
pub(crate) const MAX_USERINFO_LEN: usize = 256;

/// Which family of assignment keywords a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssignmentKind {
    /// key / token / secret / credential: needs a long, random-looking value.
    Secret,
    /// password / passwd: human-chosen, so a lower bar.
    Password,
    /// A `gitea…token`/`gitea…key` setting holding 40 lowercase hex digits.
    Gitea,
}

/// Shannon entropy of `bytes` in bits per byte.
pub(crate) fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let total = f64::from(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

/// Values that are obviously not real credentials: templates, references, documentation fillers.
fn is_placeholder(value: &[u8]) -> bool {
    const FILLERS: &[&[u8]] = &[
        b"xxxx",
        b"****",
        b"....",
        b"example",
        b"changeme",
        b"placeholder",
        b"your_",
        b"your-",
        b"redacted",
        b"dummy",
        b"sample",
        b"${",
        b"{{",
        b"%(",
    ];
    if value.first().is_some_and(|&b| b == b'$') {
        return true;
    }
    let lower = value.to_ascii_lowercase();
    FILLERS.iter().any(|f| memchr::memmem::find(&lower, f).is_some()) || value.iter().all(|&b| b == value[0])
}

/// `a.b.c` made of identifiers: a reference to a variable or config path, not a literal.
fn is_dotted_path(value: &[u8]) -> bool {
    value.contains(&b'.')
        && value.split(|&b| b == b'.').all(|part| {
            part.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                && part.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        })
}

/// A long, mixed, high-entropy string: the shape of a generated credential.
pub(crate) fn looks_random(value: &[u8]) -> bool {
    let has_digit = value.iter().any(u8::is_ascii_digit);
    let has_alpha = value.iter().any(u8::is_ascii_alphabetic);
    let all_hex = value.iter().all(u8::is_ascii_hexdigit);
    // Hex has only 16 symbols, so its entropy tops out at 4 bits; use a lower bar.
    let threshold = if all_hex { 3.0 } else { 3.5 };
    value.len() >= 16
        && has_digit
        && has_alpha
        && !is_placeholder(value)
        && !is_dotted_path(value)
        && entropy(value) >= threshold
}

fn looks_like_password(value: &[u8]) -> bool {
    let classes = [
        value.iter().any(u8::is_ascii_lowercase),
        value.iter().any(u8::is_ascii_uppercase),
        value.iter().any(u8::is_ascii_digit),
        value.iter().any(u8::is_ascii_punctuation),
    ];
    let non_letter = classes[2] || classes[3];
    value.len() >= 8
        && classes.iter().filter(|&&c| c).count() >= 2
        && non_letter
        && !is_placeholder(value)
        && !is_dotted_path(value)
        && entropy(value) >= 2.8
}

/// Base64 of `user:password` with both parts non-empty and printable.
pub(crate) fn is_basic_credentials(value: &[u8]) -> bool {
    let trimmed = value.strip_suffix(b"==").or_else(|| value.strip_suffix(b"=")).unwrap_or(value);
    let Ok(decoded) = STANDARD_NO_PAD.decode(trimmed) else { return false };
    let printable = decoded.iter().all(|&b| (0x20..0x7F).contains(&b) || b >= 0x80);
    match decoded.iter().position(|&b| b == b':') {
        Some(colon) => printable && colon > 0 && colon + 1 < decoded.len(),
        None => false,
    }
}

/// Three base64url segments whose first decodes to a JSON object with a string `alg`.
pub(crate) fn is_jwt(token: &[u8]) -> bool {
    let Some(header) = token.split(|&b| b == b'.').next() else { return false };
    let Ok(json) = URL_SAFE_NO_PAD.decode(header) else { return false };
    match serde_json::from_slice::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(serde_json::Value::is_string),
        _ => false,
    }
}

/// A 256-entry byte-class table, so hot loops test membership with one load.
const fn class(chars: &[u8], alnum: bool, printable_except: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = if printable_except { b > 0x20 && b < 0x7F } else { alnum && b.is_ascii_alphanumeric() };
        i += 1;
    }
    let mut j = 0;
    while j < chars.len() {
        table[chars[j] as usize] = !printable_except;
        j += 1;
    }
    table
}

/// Identifier bytes around an assignment keyword.
static IDENT: [bool; 256] = class(b"_.-", true, false);
/// Bytes of an unquoted or quoted assignment value.
static VALUE: [bool; 256] = class(b"\"'`,;&()[]{}<>\\", false, true);
/// Bytes of a URL's `user:password` part.
static USERINFO: [bool; 256] = class(b"/?#@\"'<>`", false, true);
/// Bytes of a URL scheme.
static SCHEME: [bool; 256] = class(b"+.-", true, false);

fn is_ident(b: u8) -> bool {
    IDENT[usize::from(b)]
}

/// Cursor over a window's bytes (buffer indices), never past the window's end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at lane offset `at`, limited to the window.
    fn new(w: &Window<'a>, at: usize) -> Self {
        Self { bytes: &w.buf[..w.hi - w.base], pos: at - w.base }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, pred: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(b) if pred(b) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// Advances over at most `max` bytes of `table`'s class; returns how many.
    fn skip_class(&mut self, max: usize, table: &[bool; 256]) -> usize {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        let n = rest.iter().take(max).position(|&b| !table[usize::from(b)]).unwrap_or(rest.len().min(max));
        self.pos += n;
        n
    }

    fn skip_blanks(&mut self) {
        let mut n = 0;
        while n < 4 && self.eat(|b| b == b' ' || b == b'\t') {
            n += 1;
        }
    }
}

/// `identifier [quote] ws op ws [quote] value`, where the identifier contains the anchor keyword.
/// Returns what the pushed value was classified as: a `Secret` evaluation also recognises Gitea
/// tokens, so the two rules share one parse per keyword hit.
pub(crate) fn assignment(kind: AssignmentKind, w: &Window<'_>, out: &mut Vec<Range<usize>>) -> Option<AssignmentKind> {
    // Cheapest rejections first: most keyword hits in code (`map.get(&key)`) have no operator.
    let mut c = Cursor::new(w, w.anchor_end);
    c.skip_class(MAX_IDENT_AROUND, &IDENT);
    if c.peek().is_some_and(is_ident) {
        return None;
    }
    let ident_end = c.pos;
    c.eat(|b| b == b'"' || b == b'\'');
    c.skip_blanks();
    match c.peek() {
        Some(b'=') => {
            c.pos += 1;
            // `==` is a comparison, `=>` a map entry.
            if c.peek() == Some(b'=') {
                return None;
            }
            c.eat(|b| b == b'>');
        }
        Some(b':') => {
            c.pos += 1;
            c.eat(|b| b == b'=');
        }
        _ => return None,
    }
    c.skip_blanks();
    let quote = c.peek().filter(|&b| matches!(b, b'"' | b'\'' | b'`'));
    if quote.is_some() {
        c.pos += 1;
    }
    let start = c.pos;
    let len = c.skip_class(MAX_VALUE_LEN + 1, &VALUE);
    let end = start + len;
    if w.truncated(w.base + end) || !(8..=MAX_VALUE_LEN).contains(&len) {
        return None;
    }
    let terminator = c.peek();
    let terminated_ok = match quote {
        Some(q) => terminator == Some(q),
        // A call (`token = make_token(…)`) or a non-ASCII continuation is not a literal.
        None => terminator.is_none_or(|b| b != b'(' && b < 0x80),
    };
    if !terminated_ok {
        return None;
    }
    // The whole identifier decides the family, so `db_password_key` is judged once, as a password.
    let mut ident_start = w.anchor - w.base;
    while ident_start > w.lo - w.base && is_ident(w.buf[ident_start - 1]) {
        ident_start -= 1;
    }
    let ident = &w.buf[ident_start..ident_end];
    let has = |needle: &[u8]| ident.windows(needle.len()).any(|x| x.eq_ignore_ascii_case(needle));
    let value = &w.buf[start..end];
    let gitea = has(b"gitea") && len == 40 && value.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let verdict = match kind {
        AssignmentKind::Password => (has(b"pass") && looks_like_password(value)).then_some(AssignmentKind::Password),
        AssignmentKind::Secret | AssignmentKind::Gitea if gitea => Some(AssignmentKind::Gitea),
        AssignmentKind::Secret => (!has(b"pass") && looks_random(value)).then_some(AssignmentKind::Secret),
        AssignmentKind::Gitea => None,
    };
    if verdict.is_some() {
        out.push(w.base + start..w.base + end);
    }
    verdict
}

fn pem_body_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=:,- \t\r\n\\".contains(&b)
}

/// Parses `-----BEGIN <label>PRIVATE KEY[ BLOCK]-----` at `pos`; returns (label, end).
fn pem_header(w: &Window<'_>, pos: usize) -> Option<(Range<usize>, usize)> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let rest = &w.buf[pos - w.base..w.hi - w.base];
    let after = rest.strip_prefix(BEGIN)?;
    let label_len = after.iter().take(48).position(|&b| b == b'-')?;
    let label = &after[..label_len];
    let valid = label.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
        && (label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"));
    let closing = after.get(label_len..label_len + 5)?;
    if !valid || closing != b"-----" {
        return None;
    }
    let label_start = pos + BEGIN.len();
    Some((label_start..label_start + label_len, label_start + label_len + 5))
}

/// A private key block; spans to the matching END line when it is within the window, otherwise
/// over the header and the body bytes that follow it.
pub(crate) fn pem_block(json_key: bool, w: &Window<'_>, out: &mut Vec<Range<usize>>) {
    let mut c = Cursor::new(w, w.anchor_end);
    if json_key {
        let blank = |b: u8| b.is_ascii_whitespace();
        while c.eat(blank) {}
        if !c.eat(|b| b == b':') {
            return;
        }
        while c.eat(blank) {}
        if !c.eat(|b| b == b'"') {
            return;
        }
    } else {
        c.pos = w.anchor - w.base;
    }
    let begin = w.base + c.pos;
    let Some((label, header_end)) = pem_header(w, begin) else { return };
    let body = &w.buf[header_end - w.base..w.hi - w.base];
    let mut end = header_end + body.iter().position(|&b| !pem_body_byte(b) || b == b'-').unwrap_or(body.len());
    if let Some(rel) = memchr::memmem::find(body, b"-----END ") {
        let label_bytes = &w.buf[label.start - w.base..label.end - w.base];
        let end_line = &body[rel + 9..];
        let clean = body[..rel].iter().all(|&b| pem_body_byte(b));
        if clean && end_line.starts_with(label_bytes) && end_line[label_bytes.len()..].starts_with(b"-----") {
            end = header_end + rel + 9 + label_bytes.len() + 5;
        }
    }
    out.push(begin..end);
}

/// `scheme://user:password@`, reporting the password.
pub(crate) fn url_credentials(w: &Window<'_>, out: &mut Vec<Range<usize>>) {
    let before = &w.buf[w.lo - w.base..w.anchor - w.base];
    let scheme_len = before.iter().rev().take_while(|&&b| SCHEME[usize::from(b)]).count();
    if scheme_len == 0 || !before[before.len() - scheme_len].is_ascii_alphabetic() {
        return;
    }
    let mut c = Cursor::new(w, w.anchor_end);
    let len = c.skip_class(MAX_USERINFO_LEN, &USERINFO);
    if w.truncated(w.base + c.pos) || c.peek() != Some(b'@') || len == 0 {
        return;
    }
    let at = w.base + c.pos;
    let userinfo = &w.buf[w.anchor_end - w.base..c.pos];
    let Some(colon) = userinfo.iter().position(|&b| b == b':') else { return };
    let password = &userinfo[colon + 1..];
    let lower = password.to_ascii_lowercase();
    if password.len() < 6
        || is_placeholder(password)
        || lower == b"password"
        || lower.starts_with(b"pass") && password.len() < 10
    {
        return;
    }
    out.push(w.anchor_end + colon + 1..at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_strings() {
        assert!(entropy(b"") < f64::EPSILON);
        assert!(entropy(b"aaaa") < f64::EPSILON);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!(entropy(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY") > 4.0);
    }

    #[test]
    fn validators() {
        assert!(looks_random(b"q8Zt3Lw9Vx2Rk7Yp5Nm1"));
        assert!(!looks_random(b"get_api_token_from_environment"));
        assert!(!looks_random(b"config.secrets.api_key"));
        assert!(is_basic_credentials(b"YWxhZGRpbjpvcGVuc2VzYW1l"));
        assert!(!is_basic_credentials(b"bm9jb2xvbmhlcmU="));
        assert!(is_jwt(b"eyJhbGciOiJIUzI1NiJ9.e30.sig"));
        assert!(!is_jwt(b"eyJmb28iOiJiYXIifQ.e30.sig"));
    }
}
