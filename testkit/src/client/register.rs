//! Creating accounts by in-band registration (XEP-0077), one short-lived
//! connection per account.

use std::net::SocketAddr;

use super::error::ClientError;
use super::negotiate;
use crate::account::Account;

/// Registers `account` on the server at `addr`, then closes the connection.
/// Fails with [`ClientError::RegistrationFailed`]`("conflict")` if the user
/// exists.
pub async fn register_account(addr: SocketAddr, account: &Account) -> Result<(), ClientError> {
    let (mut stream, _features) = negotiate::open(addr, account.domain()).await?;
    negotiate::register(&mut stream, account.username(), account.password()).await?;
    // The account exists now; a failing goodbye does not matter.
    let _ = stream.shutdown().await;
    Ok(())
}
