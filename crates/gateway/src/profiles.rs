//! `igrelay.v1.ProfilesService`: forwards to the enrich service over NATS request/reply
//! (`ig.v1.req.profile`, `ig.v1.req.forget_user`), which owns the profile cache, consent and the
//! purge. Enrich answers refusals inside its response messages; they become gRPC statuses here.

use std::collections::HashMap;

use async_nats::RequestErrorKind;
use igrelay_bus::subjects;
use igrelay_core::v1::{
    ForgetUserRequest, ForgetUserResponse, GetUserProfileRequest, GetUserProfileResponse, NotEnrichedReason,
};
use prost::Message as _;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::Scope;
use crate::proto::profiles_service_server::ProfilesService;
use crate::server::Gateway;
use crate::status::{self, Violations};

/// `google.rpc.ErrorInfo.domain` of refusals that carry a `NotEnrichedReason`.
const ERROR_DOMAIN: &str = "igrelay.v1";

impl Gateway {
    /// One request to enrich, answered within `gateway.profiles_timeout` (and the call's gRPC
    /// deadline). No enrich subscribed → UNAVAILABLE; no answer in time → DEADLINE_EXCEEDED.
    async fn ask_enrich<Resp: prost::Message + Default>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        subject: &'static str,
        payload: Vec<u8>,
    ) -> Result<Resp, Status> {
        self.ensure_connected()?;
        let budget = crate::outcomes::wait_budget(None, metadata, self.cfg.profiles_timeout);
        let request = async_nats::Request::new().payload(payload.into()).timeout(Some(budget));
        let reply = self.client.send_request(subject, request).await.map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => {
                Status::unavailable(format!("the enrich service is not running (no responder on {subject})"))
            }
            RequestErrorKind::TimedOut => Status::deadline_exceeded(format!(
                "the enrich service did not answer on {subject} within {} ms",
                budget.as_millis()
            )),
            _ => status::nats_unavailable(e),
        })?;
        Resp::decode(reply.payload).map_err(|e| Status::internal(format!("undecodable answer from enrich: {e}")))
    }
}

/// A profile answer without a profile, as a gRPC status carrying the reason
/// (`google.rpc.ErrorInfo`, reason = the `NotEnrichedReason` name).
fn refusal(account: &str, igsid: &str, r: &GetUserProfileResponse) -> Status {
    let reason = NotEnrichedReason::try_from(r.not_found_reason).unwrap_or(NotEnrichedReason::Unspecified);
    let code = match reason {
        NotEnrichedReason::UserUnavailable => Code::NotFound,
        NotEnrichedReason::NoConsent | NotEnrichedReason::ConsentRequired => Code::FailedPrecondition,
        NotEnrichedReason::AccountUnavailable => Code::FailedPrecondition,
        NotEnrichedReason::Throttled => Code::ResourceExhausted,
        NotEnrichedReason::Deadline => Code::DeadlineExceeded,
        NotEnrichedReason::LookupFailed => Code::Unavailable,
        NotEnrichedReason::NotAUser => Code::InvalidArgument,
        NotEnrichedReason::Unspecified => Code::Internal,
    };
    let name = reason.as_str_name();
    let mut message = format!("no profile of user {igsid} for account {account}: {name}");
    if !r.detail.is_empty() {
        message.push_str(": ");
        message.push_str(&r.detail);
    }
    let metadata = HashMap::from([("account_id".to_owned(), account.to_owned())]);
    Status::with_error_details(code, message, ErrorDetails::with_error_info(name, ERROR_DOMAIN, metadata))
}

#[tonic::async_trait]
impl ProfilesService for Gateway {
    async fn get_user_profile(
        &self,
        request: Request<GetUserProfileRequest>,
    ) -> Result<Response<GetUserProfileResponse>, Status> {
        let p = self.principal(&request, Scope::ProfilesRead)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        v.id("account_id", &r.account_id);
        v.id("igsid", &r.igsid);
        v.check()?;
        p.require_account(&r.account_id)?;
        let answer: GetUserProfileResponse =
            self.ask_enrich(request.metadata(), subjects::PROFILE_REQUEST, r.encode_to_vec()).await?;
        if answer.profile.is_none() {
            return Err(refusal(&r.account_id, &r.igsid, &answer));
        }
        Ok(Response::new(answer))
    }

    async fn forget_user(&self, request: Request<ForgetUserRequest>) -> Result<Response<ForgetUserResponse>, Status> {
        let p = self.principal(&request, Scope::ProfilesAdmin)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        v.id("igsid", &r.igsid);
        if !r.account_id.is_empty() {
            v.id("account_id", &r.account_id);
        }
        v.check()?;
        if r.account_id.is_empty() {
            if p.accounts().is_some() {
                return Err(Status::permission_denied(format!(
                    "API key {:?} is limited to some accounts: name one in account_id (empty means every account)",
                    p.key_id
                )));
            }
        } else {
            p.require_account(&r.account_id)?;
        }
        let answer: ForgetUserResponse =
            self.ask_enrich(request.metadata(), subjects::FORGET_USER_REQUEST, r.encode_to_vec()).await?;
        // The user's id is not logged: the confirmation code identifies the deletion.
        tracing::info!(
            caller = %p.key_id,
            account = %r.account_id,
            code = %answer.confirmation_code,
            entries = answer.entries_purged,
            failed = !answer.error.is_empty(),
            "forget user"
        );
        if !answer.error.is_empty() {
            return Err(Status::internal(format!(
                "forgetting the user failed (confirmation code {}): {}",
                answer.confirmation_code, answer.error
            )));
        }
        Ok(Response::new(answer))
    }
}
