//! Attachments (allegati): files stored by the SHA-256 of their bytes, once per school.
//!
//! They are not events: an event names an attachment by its [`ContentHash`], which pins its
//! bytes, and the hash chain covers that name. An attachment is never changed nor deleted, and
//! storing the same bytes again stores nothing new. What a school may attach (sizes, media
//! types) is the caller's decision; the store only refuses a media type that is empty or
//! longer than [`MAX_MEDIA_TYPE_CHARS`].

use registro_domain::ContentHash;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::error::StoreError;

/// The longest media type the store keeps, in characters (the schema checks it too).
pub const MAX_MEDIA_TYPE_CHARS: usize = 100;

/// An attachment's description, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    /// The SHA-256 of the bytes: the attachment's name within its school.
    pub hash: ContentHash,
    /// The media type given when the bytes were first stored (`application/pdf`...).
    pub media_type: String,
    /// The number of bytes.
    pub size: u64,
    /// When the bytes were first stored (microsecond precision, UTC).
    pub stored_at: OffsetDateTime,
}

/// The SHA-256 of `content`.
pub(crate) fn content_hash(content: &[u8]) -> ContentHash {
    ContentHash::from_bytes(Sha256::digest(content).into())
}

/// Refuses a media type that is empty or longer than [`MAX_MEDIA_TYPE_CHARS`].
pub(crate) fn check_media_type(media_type: &str) -> Result<(), StoreError> {
    if media_type.is_empty() {
        return Err(StoreError::InvalidAttachment(
            "the media type is empty".into(),
        ));
    }
    let chars = media_type.chars().count();
    if chars > MAX_MEDIA_TYPE_CHARS {
        return Err(StoreError::InvalidAttachment(format!(
            "the media type has {chars} characters, more than {MAX_MEDIA_TYPE_CHARS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_sha256_of_the_bytes() {
        assert_eq!(
            content_hash(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            content_hash(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn media_types_are_refused_only_when_empty_or_too_long() {
        assert!(check_media_type("application/pdf").is_ok());
        assert!(check_media_type(&"è".repeat(MAX_MEDIA_TYPE_CHARS)).is_ok());
        for bad in [String::new(), "a".repeat(MAX_MEDIA_TYPE_CHARS + 1)] {
            assert!(matches!(
                check_media_type(&bad),
                Err(StoreError::InvalidAttachment(_))
            ));
        }
    }
}
