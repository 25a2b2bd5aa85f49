//! Labels from file names (fastai's `RegexLabeller` as used by `from_name_re`) and the vocab.

use std::path::Path;

use regex::Regex;

use crate::{Error, Result};

/// Labels a file by searching a regular expression in its file name; the label is group 1.
///
/// Same as fastai's `ImageDataLoaders.from_name_re`, which wraps `RegexLabeller(pat)` in
/// `using_attr(..., 'name')`: the pattern is *searched* (not fully matched) in the file name
/// only, not the folder, so `([^/]+)_\d+.*$` labels `great_pyrenees_173.jpg` as
/// `great_pyrenees`. The syntax is the `regex` crate's (no look-around or back-references).
#[derive(Debug, Clone)]
pub struct RegexLabeller {
    re: Regex,
}

impl RegexLabeller {
    /// Compiles `pattern`; it must have at least one capture group.
    pub fn new(pattern: &str) -> Result<Self> {
        let re = Regex::new(pattern).map_err(|e| Error::Pattern {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        if re.captures_len() < 2 {
            return Err(Error::Pattern {
                pattern: pattern.to_owned(),
                reason: "expected a capture group whose text is the label, found none; wrap \
                         the label part in parentheses, e.g. ([^/]+)_\\d+.*$"
                    .to_owned(),
            });
        }
        Ok(Self { re })
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        self.re.as_str()
    }

    /// Group 1 of the first match in `name`, or `None` when there is no match or group 1 did not
    /// take part in it.
    pub fn label_str<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.re
            .captures(name)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str())
    }

    /// The label of `path`, from its file name.
    ///
    /// A file name that is not valid UTF-8 is refused ([`Error::NonUtf8Name`]) rather than
    /// converted lossily: labels are text, and a lossy conversion would give names that differ
    /// only in their invalid bytes (`a\xff_1.jpg`, `a\xfe_1.jpg`) the same label. Only the file
    /// name matters; the folders above it may have any name.
    pub fn label(&self, path: &Path) -> Result<String> {
        let name = match path.file_name() {
            None => "",
            Some(n) => n.to_str().ok_or_else(|| Error::NonUtf8Name {
                path: path.to_path_buf(),
            })?,
        };
        self.label_str(name)
            .map(str::to_owned)
            .ok_or_else(|| Error::NoMatch {
                pattern: self.pattern().to_owned(),
                name: name.to_owned(),
                path: path.to_path_buf(),
            })
    }
}

/// The sorted, de-duplicated list of labels; a label's class index is its position.
///
/// Matches fastai's `CategoryMap(sort=True)`: Python sorts `str` by code point, which is the
/// byte order of UTF-8 that `String`'s `Ord` uses, so upper-case cat breeds come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocab {
    labels: Vec<String>,
}

impl Vocab {
    /// Builds the vocab from any labels (duplicates allowed, any order).
    pub fn new<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut labels: Vec<String> = labels.into_iter().map(|s| s.as_ref().to_owned()).collect();
        labels.sort();
        labels.dedup();
        Self { labels }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Class index of `label`, if it is in the vocab.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.labels.binary_search_by(|l| l.as_str().cmp(label)).ok()
    }

    /// The label of class `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn label(&self, index: usize) -> &str {
        &self.labels[index]
    }

    /// All labels in class-index order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
}
