//! The server's HTTP API for staff and clinicians (`docs/protocol.md`, "HTTP API"): invitations,
//! residents' tablets, a remote check and the audit export, plus redeeming a short code. Every
//! failure becomes a [`ClientError`] with the server's plain sentence.

use std::time::Duration;

use hearth_proto::care::{
    ApiError, CheckReport, Invitation as ServerInvitation, NewInvitation, Redeem, Redeemed, Rules,
    Tablet,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ClientError, ErrorCode};
use crate::invitation::{Invitation, http_base};

/// Longest wait for one request; a remote check waits up to 30 s on the server.
const TIMEOUT: Duration = Duration::from_secs(40);

fn unreachable() -> ClientError {
    ClientError::new(
        ErrorCode::ServerUnreachable,
        "The Hearth server cannot be reached. Check the internet connection and try again.",
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// Reads an answer: the body as `T` on success, the server's error otherwise.
async fn read<T: DeserializeOwned>(res: reqwest::Response) -> Result<T, ClientError> {
    let status = res.status();
    let bytes = res.bytes().await.map_err(|_| unreachable())?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(error = %e, "unreadable answer from the server");
            ClientError::new(
                ErrorCode::Internal,
                "The server's answer could not be read. Is it a Hearth server of the same version?",
            )
        });
    }
    match serde_json::from_slice::<ApiError>(&bytes) {
        Ok(e) => Err(ClientError::new(ErrorCode::from_server(e.code), e.message)),
        Err(_) => Err(ClientError::new(
            ErrorCode::Internal,
            format!("The server answered {status}."),
        )),
    }
}

/// Exchanges a short code for an invitation at the server whose WebSocket URL is `server`.
pub async fn redeem(server: &str, code: &str) -> Result<Invitation, ClientError> {
    let base = http_base(server)?;
    let res = client()
        .post(format!("{base}/v1/redeem"))
        .json(&Redeem {
            code: code.to_owned(),
        })
        .send()
        .await
        .map_err(|_| unreachable())?;
    let redeemed: Redeemed = read(res).await?;
    Ok(Invitation {
        server: server.to_owned(),
        token: redeemed.token,
    })
}

#[derive(Deserialize)]
struct Invitations {
    invitations: Vec<ServerInvitation>,
}

#[derive(Deserialize)]
struct Tablets {
    tablets: Vec<Tablet>,
}

/// The API as the holder of `invitation` (a staff member or a clinician).
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    /// The API of `invitation`'s server, signed with its token.
    pub fn new(invitation: &Invitation) -> Result<Self, ClientError> {
        Ok(Self {
            base: http_base(&invitation.server)?,
            token: invitation.token.clone(),
            http: client(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        read(req.send().await.map_err(|_| unreachable())?).await
    }

    /// Creates an invitation: a link and a short code.
    pub async fn create_invitation(
        &self,
        ask: &NewInvitation,
    ) -> Result<ServerInvitation, ClientError> {
        self.send(
            self.request(reqwest::Method::POST, "/v1/invitations")
                .json(ask),
        )
        .await
    }

    /// Invitations, newest first (a clinician sees their room's).
    pub async fn invitations(&self) -> Result<Vec<ServerInvitation>, ClientError> {
        let list: Invitations = self
            .send(self.request(reqwest::Method::GET, "/v1/invitations"))
            .await?;
        Ok(list.invitations)
    }

    /// Withdraws an invitation: it stops working at once.
    pub async fn revoke_invitation(&self, id: &str) -> Result<ServerInvitation, ClientError> {
        let path = format!("/v1/invitations/{}", encode(id));
        self.send(self.request(reqwest::Method::DELETE, &path))
            .await
    }

    /// Residents' tablets with their online state, last check and rules.
    pub async fn tablets(&self) -> Result<Vec<Tablet>, ClientError> {
        let list: Tablets = self
            .send(self.request(reqwest::Method::GET, "/v1/tablets"))
            .await?;
        Ok(list.tablets)
    }

    /// Sets a resident's rules; the tablet gets them at once.
    pub async fn set_rules(&self, sub: &str, rules: &Rules) -> Result<Tablet, ClientError> {
        let path = format!("/v1/tablets/{}/rules", encode(sub));
        self.send(self.request(reqwest::Method::PUT, &path).json(rules))
            .await
    }

    /// Runs the pre-call check on a resident's tablet and waits for its result.
    pub async fn run_check(&self, sub: &str) -> Result<CheckReport, ClientError> {
        let path = format!("/v1/tablets/{}/check", encode(sub));
        self.send(self.request(reqwest::Method::POST, &path)).await
    }

    /// The audit trail as CSV.
    pub async fn audit_csv(&self) -> Result<String, ClientError> {
        let res = self
            .request(reqwest::Method::GET, "/v1/audit?format=csv")
            .send()
            .await
            .map_err(|_| unreachable())?;
        if res.status().is_success() {
            res.text().await.map_err(|_| unreachable())
        } else {
            read::<()>(res).await.map(|()| String::new())
        }
    }
}

/// Percent-encodes one path segment.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
