//! Validation findings shared by the config and profile loaders: a
//! [`Problem`] names the key and says what is wrong; [`parse_toml`] turns a
//! TOML/serde failure into the same shape (key path, line, message).
//!
//! Validation collects every problem instead of stopping at the first, so an
//! operator fixes a config in one round rather than one error per restart.

use std::fmt;

use serde::de::DeserializeOwned;

/// One thing wrong with a config or profile: `key` is the TOML path of the
/// offending value as the operator wrote it (`interface[1] "inside"`,
/// `route[0]`, `arp.reachable_s`), `message` says what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All problems found in one file, in file order. Displays one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was found, the problems otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A TOML file that could not be read into its schema (syntax error, wrong
/// type, unknown key, missing key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFailure {
    /// Dotted path of the value being read when it failed (`interface[1].mtu`),
    /// or `.` for the document root.
    pub key: String,
    /// 1-based line of the failure, when the parser knows it.
    pub line: Option<usize>,
    /// The parser's message, single line.
    pub message: String,
}

impl fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Deserialize `text` as `T`, reporting the key path and line on failure.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, ParseFailure> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        ParseFailure {
            key: path_to_key(&path),
            line,
            message: inner.message().trim().replace('\n', " "),
        }
    })
}

/// serde_path_to_error writes array indices as `interface[1]` already; the
/// root is `.`. Keep it, it is the operator's own key spelling.
fn path_to_key(path: &str) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: Inner,
        #[serde(default)]
        item: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u16,
    }

    #[test]
    fn parse_failure_names_key_and_line() {
        let e =
            parse_toml::<Doc>("[a]\nn = 1\n[[item]]\nn = 1\n[[item]]\nn = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "item[1].n");
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("expected u16"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse_toml::<Doc>("[a]\nn = 1\nm = 2\n").unwrap_err();
        assert_eq!(e.key, "a.m");
        assert!(e.message.contains("unknown field `m`"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse_toml::<Doc>("[a]\nn = = 1\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }
}
