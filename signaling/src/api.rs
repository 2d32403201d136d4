//! The HTTP API for care-home staff and clinicians (`docs/protocol.md`, "HTTP API"): invitations
//! (create, list, withdraw, redeem), residents' tablets (online state, rules, a remote check) and
//! the audit trail's export. Every call but `redeem` needs `Authorization: Bearer <token>`; every
//! error is `{"code", "message"}` with a fitting status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use futures_util::StreamExt;
use hearth_proto::care::{
    ApiError, AuditEvent, AuditRecord, Invitation, NewInvitation, Redeem, Redeemed, Rules, Tablet,
};
use hearth_proto::{ErrorCode, Role};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use crate::hub::{Hub, unix_ms};
use crate::store::{AuditQuery, Store, StoreError, StoreOp, normalise_code};
use crate::token::{Claims, MAX_ID_BYTES, MAX_NAME_BYTES};

/// A resident's invitation this close to its end (or past it, or withdrawn) is being replaced
/// when staff make another for the same resident: two weeks, as the console warns.
const RENEWAL_WINDOW_MS: u64 = 14 * 24 * 3600 * 1000;

/// How long an invitation lasts unless asked otherwise: a week.
const DEFAULT_EXPIRY_S: u32 = 7 * 24 * 3600;
/// The longest an invitation may last: a year.
const MAX_EXPIRY_S: u32 = 365 * 24 * 3600;
/// The shortest: a minute.
const MIN_EXPIRY_S: u32 = 60;
/// Letters and digits of short codes: no 0/O, 1/I/L or U, so a code read aloud or copied by
/// hand survives.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Audit records per page read from the store while streaming an export.
const AUDIT_PAGE: usize = 500;

/// The routes, to merge into the server's router.
pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route(
            "/v1/invitations",
            post(create_invitation).get(list_invitations),
        )
        .route("/v1/invitations/{id}", delete(revoke_invitation))
        .route("/v1/redeem", post(redeem))
        .route("/v1/tablets", get(list_tablets))
        .route("/v1/tablets/{sub}/rules", put(put_rules))
        .route("/v1/tablets/{sub}/check", post(run_check))
        .route("/v1/audit", get(export_audit))
        .layer(axum::middleware::map_response(as_api_error))
}

/// The server's own refusals on these routes (no such method, a body over the size limit) in
/// the API's shape, a code and a sentence, like every other answer here.
async fn as_api_error(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, NOTHING_HERE),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::BadMessage,
            "This address does not take that method.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::TooLarge, "The request is too large."),
        s if s.is_client_error() => (ErrorCode::BadMessage, "The request could not be read."),
        _ => (ErrorCode::Internal, ErrorCode::Internal.default_message()),
    };
    let mut answer = Failure::new(status, code, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// What is said for an address with nothing at it.
const NOTHING_HERE: &str = "There is nothing at this address.";

/// Any address the server does not have (the whole server's fallback): not found, in the
/// API's shape.
pub(crate) async fn not_found() -> Response {
    Failure::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, NOTHING_HERE).into_response()
}

/// An error answer: status, code, sentence.
#[derive(Debug)]
pub(crate) struct Failure(StatusCode, ErrorCode, String);

impl Failure {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Failure(status, code, message.into())
    }

    fn of(code: ErrorCode) -> Self {
        let status = match code {
            ErrorCode::BadToken | ErrorCode::ExpiredToken | ErrorCode::Revoked => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::BadMessage | ErrorCode::TooLarge => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound | ErrorCode::UnknownPeer => StatusCode::NOT_FOUND,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Offline => StatusCode::CONFLICT,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::ShuttingDown | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, code, code.default_message().to_owned())
    }

    fn bad(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, ErrorCode::BadMessage, message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        error!(error = %e, "store failure");
        if matches!(e, StoreError::Shared(_)) {
            // The change may still be taken later (it may have reached the shared log).
            return Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "The records shared between the servers could not be reached just now. Look at the list again in a moment before trying again.",
            );
        }
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "The server could not read or save its records. Nothing was changed.",
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.1,
            message: self.2,
        };
        (self.0, axum::Json(body)).into_response()
    }
}

type Answer<T> = Result<T, Failure>;

/// Runs a blocking store call off the async threads, on a copy of the store that has caught up
/// with the shared log ([`crate::persist::Changes::caught_up`]).
async fn blocking<T: Send + 'static>(
    hub: &Arc<Hub>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Answer<T> {
    hub.changes.caught_up().await?;
    let store = hub.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => Ok(r?),
        Err(e) => {
            error!(error = %e, "store task failed");
            Err(Failure::of(ErrorCode::Internal))
        }
    }
}

/// Reads a JSON body into `T`, with a plain sentence when it does not fit.
fn json_body<T: DeserializeOwned>(body: &Bytes) -> Answer<T> {
    serde_json::from_slice(body).map_err(|e| {
        let detail = e.to_string();
        let detail = detail.split(" at line ").next().unwrap_or_default();
        Failure::bad(format!("The request body is not well formed: {detail}."))
    })
}

/// A query string that does not fit, in a sentence.
fn bad_query(e: QueryRejection) -> Failure {
    let detail = e.body_text();
    let detail = detail
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&detail);
    Failure::bad(format!("The query is not well formed: {detail}."))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The holder of a verified bearer token.
pub(crate) struct Bearer(Claims);

impl FromRequestParts<Arc<Hub>> for Bearer {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Answer<Self> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::BadToken,
                    "Sign in first: this needs a staff or clinician token.",
                )
            })?;
        let claims = hub
            .keys
            .verify(token.trim(), now_unix())
            .map_err(|e| Failure::of(e.code()))?;
        if hub.is_revoked(claims.inv.as_deref()) {
            return Err(Failure::of(ErrorCode::Revoked));
        }
        Ok(Bearer(claims))
    }
}

impl Bearer {
    fn staff(&self) -> Answer<()> {
        if self.0.role == Role::Staff {
            Ok(())
        } else {
            Err(Failure::forbidden("Only care-home staff can do this."))
        }
    }

    /// Staff may manage every room's invitations; a clinician only their own room's, and only
    /// for the roles a clinician brings into a consult (patients, guests, family).
    fn may_invite(&self, room: &str, role: Role) -> Answer<()> {
        match self.0.role {
            Role::Staff => Ok(()),
            // Not clinicians: a clinician's token passes residents' rules and the API, which is
            // for staff to hand out. A nurse joins a consult as a guest and is let in.
            Role::Clinician if room == self.0.room => match role {
                Role::Family | Role::Guest | Role::Patient => Ok(()),
                Role::Resident | Role::Staff | Role::Clinician => Err(Failure::forbidden(
                    "A clinician can invite patients, guests and family into their consult.",
                )),
            },
            Role::Clinician => Err(Failure::forbidden(
                "A clinician can only invite people into their own consult room.",
            )),
            _ => Err(Failure::forbidden(
                "Only care-home staff and clinicians can manage invitations.",
            )),
        }
    }

    fn audit(&self, hub: &Hub, event: AuditEvent, room: &str, who: (&str, &str, Role)) {
        hub.audit(AuditRecord {
            seq: 0,
            at: unix_ms(),
            event,
            room: room.to_owned(),
            sub: who.0.to_owned(),
            name: who.1.to_owned(),
            role: Some(who.2),
            by_sub: Some(self.0.sub.clone()),
            by_name: Some(self.0.name.clone()),
        });
    }
}

fn new_code() -> String {
    let mut code = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        let pick = rand::random_range(0..CODE_ALPHABET.len());
        code.push(char::from(CODE_ALPHABET[pick]));
    }
    code
}

async fn create_invitation(
    State(hub): State<Arc<Hub>>,
    who: Bearer,
    body: Bytes,
) -> Answer<Response> {
    let ask: NewInvitation = json_body(&body)?;
    let room = ask.room.trim().to_owned();
    let name = ask.name.trim().to_owned();
    if room.is_empty() || room.len() > MAX_ID_BYTES {
        return Err(Failure::bad(format!(
            "The room needs a name of 1 to {MAX_ID_BYTES} bytes."
        )));
    }
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Failure::bad(format!(
            "The person needs a name of 1 to {MAX_NAME_BYTES} bytes."
        )));
    }
    let lasts = ask.expires_in_s.unwrap_or(DEFAULT_EXPIRY_S);
    if !(MIN_EXPIRY_S..=MAX_EXPIRY_S).contains(&lasts) {
        return Err(Failure::bad(
            "An invitation lasts between one minute and one year.",
        ));
    }
    who.may_invite(&room, ask.role)?;
    let now = unix_ms();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let base = hub.public_url();
    // Codes are random; a clash with a live one is rare but checked, and the store keeps the
    // first of two made at once on different servers: the other reads nothing back and tries
    // another code.
    let mut made = None;
    for _ in 0..5 {
        let code = new_code();
        let taken = blocking(&hub, {
            let code = code.clone();
            move |s| s.invitation_id_by_code(&code)
        })
        .await?;
        if taken.is_some() {
            continue;
        }
        let invitation = Invitation {
            link: format!("{base}/join/{}", normalise_code(&code)),
            code,
            sub: format!("inv-{id}"),
            id: id.clone(),
            room: room.clone(),
            role: ask.role,
            name: name.clone(),
            created_by: who.0.name.clone(),
            created_at: now,
            expires_at: now + u64::from(lasts) * 1000,
            revoked_at: None,
            redeemed: 0,
        };
        hub.changes
            .make(StoreOp::Invite {
                invitation: invitation.clone(),
            })
            .await?;
        let stored = blocking(&hub, {
            let id = id.clone();
            move |s| s.invitation(&id)
        })
        .await?;
        if stored.as_ref().is_some_and(|s| s.code == invitation.code) {
            made = stored;
            break;
        }
    }
    let invitation = made.ok_or_else(|| Failure::of(ErrorCode::Internal))?;
    info!(invitation = %invitation.id, room = %invitation.room, role = %invitation.role, "invitation created");
    who.audit(
        &hub,
        AuditEvent::InvitationCreated,
        &invitation.room,
        (&invitation.sub, &invitation.name, invitation.role),
    );
    // The invitation is made whatever happens here: a failure is logged, not answered (staff
    // would make a second one), and the rules can be set by hand.
    if invitation.role == Role::Resident
        && let Err(Failure(_, code, _)) = carry_rules_over(&hub, &who, &invitation).await
    {
        warn!(invitation = %invitation.id, ?code, "a tablet's rules could not be carried over");
    }
    Ok((StatusCode::CREATED, axum::Json(invitation)).into_response())
}

/// Saves the rules of tablet `(sub, name, room)` (its record is made when new), hands them to
/// its room at once, and records who changed them.
async fn save_rules(
    hub: &Arc<Hub>,
    who: &Bearer,
    (sub, name, room): (&str, &str, &str),
    rules: Rules,
) -> Answer<()> {
    hub.changes
        .make(StoreOp::Rules {
            sub: sub.to_owned(),
            name: name.to_owned(),
            room: room.to_owned(),
            rules: rules.clone(),
        })
        .await?;
    hub.set_rules(sub, rules).await;
    who.audit(
        hub,
        AuditEvent::RulesChanged,
        room,
        (sub, name, Role::Resident),
    );
    Ok(())
}

/// A new invitation for a resident whose tablet is being set up again takes that tablet's
/// rules, so staff need not enter again who may call and when: a tablet with rules, the same
/// name in the same room, whose own invitation is withdrawn, over, or in its last two weeks
/// (two residents of one name, both with working invitations, keep their own rules).
async fn carry_rules_over(hub: &Arc<Hub>, who: &Bearer, invitation: &Invitation) -> Answer<()> {
    let ending = invitation.created_at + RENEWAL_WINDOW_MS;
    let previous = blocking(hub, {
        let (room, name, sub) = (
            invitation.room.clone(),
            invitation.name.clone(),
            invitation.sub.clone(),
        );
        move |s| {
            let invitations = s.invitations()?;
            let replaced = |tablet_sub: &str| {
                invitations.iter().any(|i| {
                    i.sub == tablet_sub && (i.revoked_at.is_some() || i.expires_at <= ending)
                })
            };
            Ok(s.tablets()?
                .into_iter()
                .filter(|t| t.room == room && t.name == name && t.sub != sub)
                .filter(|t| t.rules != Rules::default() && replaced(&t.sub))
                .max_by_key(|t| t.last_seen))
        }
    })
    .await?;
    let Some(previous) = previous else {
        return Ok(());
    };
    let tablet = (
        invitation.sub.as_str(),
        invitation.name.as_str(),
        invitation.room.as_str(),
    );
    save_rules(hub, who, tablet, previous.rules).await?;
    info!(tablet = %invitation.sub, from = %previous.sub, "rules carried over to a new invitation");
    Ok(())
}

#[derive(Deserialize)]
struct RoomFilter {
    room: Option<String>,
}

async fn list_invitations(
    State(hub): State<Arc<Hub>>,
    who: Bearer,
    filter: Result<Query<RoomFilter>, QueryRejection>,
) -> Answer<Response> {
    let Query(filter) = filter.map_err(bad_query)?;
    let room = match who.0.role {
        Role::Staff => filter.room,
        Role::Clinician => Some(who.0.room.clone()),
        _ => {
            return Err(Failure::forbidden(
                "Only care-home staff and clinicians can see invitations.",
            ));
        }
    };
    let all = blocking(&hub, |s| s.invitations()).await?;
    // A clinician sees only what they may manage: not staff's or a tablet's invitations to
    // the same room, whose codes would give those identities away.
    let invitations: Vec<Invitation> = all
        .into_iter()
        .filter(|i| room.as_ref().is_none_or(|r| &i.room == r))
        .filter(|i| who.may_invite(&i.room, i.role).is_ok())
        .collect();
    Ok(axum::Json(serde_json::json!({ "invitations": invitations })).into_response())
}

async fn revoke_invitation(
    State(hub): State<Arc<Hub>>,
    who: Bearer,
    Path(id): Path<String>,
) -> Answer<Response> {
    let found = blocking(&hub, {
        let id = id.clone();
        move |s| s.invitation(&id)
    })
    .await?
    .ok_or_else(|| Failure::of(ErrorCode::NotFound))?;
    who.may_invite(&found.room, found.role)?;
    let now = unix_ms();
    hub.changes
        .make(StoreOp::Revoke {
            id: id.clone(),
            at: now,
        })
        .await?;
    let revoked = blocking(&hub, {
        let id = id.clone();
        move |s| s.invitation(&id)
    })
    .await?
    .ok_or_else(|| Failure::of(ErrorCode::NotFound))?;
    hub.revoke(&id).await;
    info!(invitation = %id, "invitation withdrawn");
    if found.revoked_at.is_none() {
        who.audit(
            &hub,
            AuditEvent::InvitationRevoked,
            &revoked.room,
            (&revoked.sub, &revoked.name, revoked.role),
        );
    }
    Ok(axum::Json(revoked).into_response())
}

async fn redeem(
    State(hub): State<Arc<Hub>>,
    // Present when served by `Server` (mounted elsewhere without addresses, only the global
    // limit applies).
    from: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let ask: Redeem = json_body(&body)?;
    // Behind a load balancer every request comes from it: the client is who it says.
    let forwarded_for = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let address_ok = from.is_none_or(|axum::Extension(ConnectInfo(a))| {
        let client = hub.options.client_address(a.ip(), forwarded_for);
        hub.redeem_by_address.check_key(&client).is_ok()
    });
    if !address_ok || hub.redeem_limiter.check().is_err() {
        return Err(Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "Too many codes were tried just now. Wait a few seconds and try again.",
        ));
    }
    // A whole link works as well as its code.
    let code = ask.code.trim().rsplit('/').next().unwrap_or_default();
    let code = normalise_code(code);
    if code.len() != 8 {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "This code is not known. Codes have eight letters and digits, like ABCD-2345.",
        ));
    }
    let now = unix_ms();
    let found = blocking(&hub, move |s| {
        let Some(id) = s.invitation_id_by_code(&code)? else {
            return Ok(None);
        };
        s.invitation(&id)
    })
    .await?;
    let invitation = match found {
        Some(found) if found.revoked_at.is_none() && found.expires_at > now => {
            hub.changes
                .make(StoreOp::Redeem {
                    id: found.id.clone(),
                })
                .await?;
            let id = found.id.clone();
            blocking(&hub, move |s| s.invitation(&id)).await?
        }
        other => other,
    };
    let invitation = invitation.ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "This code is not known. Check it against the care home's message.",
        )
    })?;
    if invitation.revoked_at.is_some() {
        return Err(Failure::new(
            StatusCode::GONE,
            ErrorCode::Revoked,
            ErrorCode::Revoked.default_message(),
        ));
    }
    if invitation.expires_at <= now {
        return Err(Failure::new(
            StatusCode::GONE,
            ErrorCode::ExpiredToken,
            ErrorCode::ExpiredToken.default_message(),
        ));
    }
    let claims = Claims {
        room: invitation.room.clone(),
        role: invitation.role,
        name: invitation.name.clone(),
        sub: invitation.sub.clone(),
        exp: invitation.expires_at / 1000,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        inv: Some(invitation.id.clone()),
    };
    let token = hub.keys.sign(&claims).map_err(|e| Failure::of(e.code()))?;
    info!(invitation = %invitation.id, "invitation redeemed");
    Ok(axum::Json(Redeemed {
        token,
        room: invitation.room,
        role: invitation.role,
        name: invitation.name,
        expires_at: invitation.expires_at,
    })
    .into_response())
}

async fn list_tablets(State(hub): State<Arc<Hub>>, who: Bearer) -> Answer<Response> {
    who.staff()?;
    let mut stored = blocking(&hub, |s| s.tablets()).await?;
    let mut online = hub.online_tablets_everywhere().await;
    for t in &mut stored {
        if let Some(live) = online.remove(&t.sub) {
            t.online_since = Some(live.since_ms);
            if live.check.map(|c| c.at) > t.check.map(|c| c.at) {
                t.check = live.check;
            }
        }
    }
    // Connected before the store caught up with them.
    for (sub, live) in online {
        stored.push(Tablet {
            sub,
            name: live.name,
            room: live.room,
            online_since: Some(live.since_ms),
            last_seen: live.since_ms,
            check: live.check,
            rules: Rules::default(),
        });
    }
    Ok(axum::Json(serde_json::json!({ "tablets": stored })).into_response())
}

async fn put_rules(
    State(hub): State<Arc<Hub>>,
    who: Bearer,
    Path(sub): Path<String>,
    body: Bytes,
) -> Answer<Response> {
    who.staff()?;
    let rules: Rules = json_body(&body)?;
    rules.validate().map_err(Failure::bad)?;
    let online = hub.online_tablets_everywhere().await.remove(&sub);
    let known = blocking(&hub, {
        let sub = sub.clone();
        move |s| {
            // A tablet staff can name: one seen before, one connected now, or one a resident
            // invitation will set up.
            Ok(match (s.tablet(&sub)?, online) {
                (Some(t), _) => Some((t.name, t.room)),
                (None, Some(live)) => Some((live.name, live.room)),
                (None, None) => s
                    .invitations()?
                    .into_iter()
                    .find(|i| i.sub == sub && i.role == Role::Resident)
                    .map(|i| (i.name, i.room)),
            })
        }
    })
    .await?;
    let Some((name, room)) = known else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "No resident's tablet has this id. Create a resident invitation for it first.",
        ));
    };
    save_rules(&hub, &who, (&sub, &name, &room), rules).await?;
    info!(tablet = %sub, "rules changed");
    let tablet = blocking(&hub, {
        let sub = sub.clone();
        move |s| s.tablet(&sub)
    })
    .await?
    .ok_or_else(|| Failure::of(ErrorCode::Internal))?;
    Ok(axum::Json(tablet).into_response())
}

async fn run_check(
    State(hub): State<Arc<Hub>>,
    who: Bearer,
    Path(sub): Path<String>,
) -> Answer<Response> {
    who.staff()?;
    let (request, answer) = hub.request_check(&sub).await.map_err(Failure::of)?;
    // Forgotten however this ends, also when the caller goes away and this is cancelled.
    struct Forget<'a>(&'a Hub, String);
    impl Drop for Forget<'_> {
        fn drop(&mut self) {
            self.0.forget_check(&self.1);
        }
    }
    let _forget = Forget(&hub, request);
    let waited = tokio::time::timeout(hub.options.limits.check_timeout, answer).await;
    match waited {
        Ok(Ok(report)) => Ok(axum::Json(report).into_response()),
        Ok(Err(_)) | Err(_) => Err(Failure::of(ErrorCode::Timeout)),
    }
}

#[derive(Deserialize)]
struct AuditParams {
    format: Option<String>,
    room: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
    after_seq: Option<u64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    JsonLines,
    Csv,
}

/// CSV columns: the record's fields, with the time also in RFC 3339 for people.
const CSV_HEADER: &str = "seq,at,time,event,room,sub,name,role,by_sub,by_name\n";

/// A text cell as a spreadsheet will not run it: one starting like a formula gets a leading
/// apostrophe (names and rooms come from tokens and invitations, which anyone may be given).
fn cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

fn csv_rows(records: &[AuditRecord]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    for r in records {
        let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(r.at));
        w.write_record([
            r.seq.to_string().as_str(),
            r.at.to_string().as_str(),
            time.to_string().as_str(),
            r.event.as_str(),
            &cell(&r.room),
            &cell(&r.sub),
            &cell(&r.name),
            r.role.map_or("", Role::as_str),
            &cell(r.by_sub.as_deref().unwrap_or("")),
            &cell(r.by_name.as_deref().unwrap_or("")),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

fn json_lines(records: &[AuditRecord]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

async fn export_audit(
    State(hub): State<Arc<Hub>>,
    who: Bearer,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Answer<Response> {
    who.staff()?;
    let Query(params) = params.map_err(bad_query)?;
    let format = match params.format.as_deref() {
        None | Some("jsonl") => Format::JsonLines,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(Failure::bad(format!(
                "{other:?} is not an export format; use jsonl or csv."
            )));
        }
    };
    // Records queued a moment ago are in the export.
    hub.flush().await;
    let query = AuditQuery {
        after_seq: params.after_seq,
        since: params.since,
        until: params.until,
        room: params.room,
    };
    let start = query.after_seq.unwrap_or(0);
    // The first page is read before answering, so a broken store is an error, not a cut-off
    // download.
    let first = blocking(&hub, {
        let query = query.clone();
        move |s| s.audit_page(&query, start, AUDIT_PAGE)
    })
    .await?;
    let encode = move |records: &[AuditRecord]| -> Result<Bytes, std::io::Error> {
        match format {
            Format::JsonLines => json_lines(records)
                .map(Bytes::from)
                .map_err(std::io::Error::other),
            Format::Csv => csv_rows(records)
                .map(Bytes::from)
                .map_err(std::io::Error::other),
        }
    };
    let head = match format {
        Format::Csv => Bytes::from_static(CSV_HEADER.as_bytes()),
        Format::JsonLines => Bytes::new(),
    };
    let pages =
        futures_util::stream::unfold(Some((hub, query, Some(first))), move |state| async move {
            let (hub, query, page) = state?;
            let (records, cursor) = match page {
                Some(p) => p,
                None => return None,
            };
            let body = encode(&records);
            if body.is_err() {
                return Some((body, None));
            }
            let next = match cursor {
                None => None,
                Some(after) => {
                    let q = query.clone();
                    match blocking(&hub, move |s| s.audit_page(&q, after, AUDIT_PAGE)).await {
                        Ok(p) => Some(p),
                        Err(_) => {
                            return Some((
                                Err(std::io::Error::other("the store failed mid-export")),
                                None,
                            ));
                        }
                    }
                }
            };
            Some((body, Some((hub, query, next))))
        });
    let body = futures_util::stream::once(async move { Ok(head) }).chain(pages);
    let (content_type, file) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "hearth-audit.csv"),
        Format::JsonLines => ("application/x-ndjson", "hearth-audit.jsonl"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
