//! Helpers shared by the token tests.

use crate::secret::Secret;

pub(super) fn secret() -> Secret {
    Secret::new("canary-secret")
}
