//! Where attachment content may come from besides the message itself: local files
//! (`attachments[].path`) and URLs (`href`, or a `path` that is an http(s) URL).
//!
//! A message built from user input could otherwise name any file the process can read
//! (local file inclusion). As in nodemailer, `disableFileAccess` and `disableUrlAccess`
//! (transport config, the `defaults` of `createTransport` or the message) refuse them; a
//! flag switched on anywhere cannot be switched off by another level. Files are read up
//! to `maxFileSize` bytes (nodemailer has no limit), never further. URLs are fetched by
//! `message::fetch` once `check_url` allows them.

use tokio::io::AsyncReadExt;

use crate::error::Result;
use crate::input::{Field, Value};

/// nodemailer reads files of any size; 64 MiB is above the largest attachment Exchange
/// Online accepts by default (35 MB per message, base64 included).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// The transport's policy (`mail.smtp.disableFileAccess`, `disableUrlAccess`, `maxFileSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentAccess {
    pub disable_file_access: bool,
    pub disable_url_access: bool,
    pub max_file_size: u64,
}

impl Default for ContentAccess {
    fn default() -> Self {
        ContentAccess {
            disable_file_access: false,
            disable_url_access: false,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

impl ContentAccess {
    /// Parses the transport-level keys of `root` (the `mail.smtp` object).
    pub fn from_config(root: &Field) -> Result<Self> {
        Ok(ContentAccess {
            disable_file_access: root.child("disableFileAccess").optional_bool()?.unwrap_or(false),
            disable_url_access: root.child("disableUrlAccess").optional_bool()?.unwrap_or(false),
            max_file_size: root
                .child("maxFileSize")
                .optional_integer(1..=(1 << 40))?
                .unwrap_or(DEFAULT_MAX_FILE_SIZE),
        })
    }

    /// This policy tightened by the flags of the `defaults` and of the message (`message`
    /// is the message's root field): any level may switch a flag on, none can switch off
    /// what another switched on.
    pub fn for_message(&self, message: &Field, defaults: Option<&Value>) -> Result<Self> {
        let flag = |key: &str| -> Result<bool> {
            let from_defaults = defaults.and_then(|d| d.get(key)) == Some(&Value::Bool(true));
            Ok(message.child(key).optional_bool()?.unwrap_or(false) || from_defaults)
        };
        Ok(ContentAccess {
            disable_file_access: self.disable_file_access || flag("disableFileAccess")?,
            disable_url_access: self.disable_url_access || flag("disableUrlAccess")?,
            max_file_size: self.max_file_size,
        })
    }

    /// Whether the URL in `field` (an `href`, or a `path` that is a URL) may be fetched.
    /// The URL is not repeated in the error: it may carry credentials.
    pub fn check_url(&self, field: &Field) -> Result<()> {
        match self.disable_url_access {
            true => Err(field.error("is a URL and URL access is disabled (disableUrlAccess)")),
            false => Ok(()),
        }
    }

    /// The content of the file named by `field` (an attachment's `path`), at most
    /// `max_file_size` bytes; a path that is an http(s) URL is never taken for a file name.
    pub async fn read_path(&self, field: &Field<'_>, path: &str) -> Result<Vec<u8>> {
        if is_url(path) {
            self.check_url(field)?;
            return Err(field.error("is a URL, not a file name: it is fetched, not read"));
        }
        if self.disable_file_access {
            return Err(field.error(format!(
                "names a file ({path:?}) and file access is disabled (disableFileAccess)"
            )));
        }
        let unreadable = |err: std::io::Error| field.error(format!("cannot be read: {path:?}: {err}"));
        let too_large = || {
            field.error(format!(
                "names a file larger than maxFileSize ({} bytes): {path:?}",
                self.max_file_size
            ))
        };
        let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let metadata = file.metadata().await.map_err(unreadable)?;
        if metadata.is_dir() {
            return Err(field.error(format!("names a directory, not a file: {path:?}")));
        }
        if metadata.len() > self.max_file_size {
            return Err(too_large());
        }
        // The size may change, and devices or /proc files report none: the read itself
        // stops one byte past the limit.
        let mut content = Vec::with_capacity(metadata.len() as usize);
        file.take(self.max_file_size + 1)
            .read_to_end(&mut content)
            .await
            .map_err(unreadable)?;
        if content.len() as u64 > self.max_file_size {
            return Err(too_large());
        }
        Ok(content)
    }
}

/// nodemailer's test: a path starting with `http://` or `https://`, in any case.
pub(crate) fn is_url(path: &str) -> bool {
    let lower = path.get(..8).unwrap_or(path).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn read(access: ContentAccess, path: &str) -> Result<Vec<u8>> {
        let value = Value::str(path);
        let field = Field::root("message.attachments[0].path", &value, ErrorKind::Message);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(access.read_path(&field, path))
    }

    #[test]
    fn urls_are_never_file_names() {
        for url in ["https://example.com/a.pdf", "HTTP://user:pw@example.com/a"] {
            let err = read(ContentAccess::default(), url).unwrap_err();
            assert_eq!(err.code(), "EMESSAGE");
            assert!(
                err.message().contains("is a URL, not a file name"),
                "{}",
                err.message()
            );
            assert!(!err.message().contains("pw@"), "the URL is not repeated");
            let blocked = ContentAccess {
                disable_url_access: true,
                ..ContentAccess::default()
            };
            let err = read(blocked, url).unwrap_err();
            assert!(err.message().contains("(disableUrlAccess)"), "{}", err.message());
        }
    }

    #[test]
    fn reads_stop_at_the_limit_even_without_a_size() {
        let small = ContentAccess {
            max_file_size: 10,
            ..ContentAccess::default()
        };
        // /dev/zero reports no size and never ends.
        let err = read(small, "/dev/zero").unwrap_err();
        assert_eq!(
            err.message(),
            r#"message.attachments[0].path names a file larger than maxFileSize (10 bytes): "/dev/zero""#
        );
        let err = read(small, "/").unwrap_err();
        assert!(err.message().contains("names a directory"), "{}", err.message());
    }
}
