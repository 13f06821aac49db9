//! `igrelay.v1.AccountsService`.

use igrelay_bus::subjects::AuditAction;
use igrelay_core::AccountId;
use igrelay_core::v1::{
    Account, AuditRecord, GetAccountRequest, GetAccountResponse, ListAccountsRequest, ListAccountsResponse, LoginType,
    RegisterAccountRequest, RegisterAccountResponse, RemoveAccountRequest, RemoveAccountResponse,
};
use igrelay_graph::{AccountAuth, ErrorClass};
use tonic::{Request, Response, Status};

use crate::auth::Scope;
use crate::proto::accounts_service_server::AccountsService;
use crate::server::Gateway;
use crate::status::{self, Violations};

const REGISTER: &str = "/igrelay.v1.AccountsService/RegisterAccount";
const REMOVE: &str = "/igrelay.v1.AccountsService/RemoveAccount";

fn account_id(field: &str, id: &str) -> Result<AccountId, Status> {
    AccountId::parse(id).map_err(|e| status::invalid(field, format!("{id:?}: {e}")))
}

impl Gateway {
    /// One cheap Graph call (`GET /<account>?fields=…`) with the new token, so a bogus, revoked
    /// or foreign token is refused now instead of the account turning NEEDS_REAUTH at its first
    /// use.
    async fn check_token(&self, account: &str, login: LoginType, token: &str) -> Result<(), Status> {
        let auth = if login == LoginType::Facebook {
            AccountAuth::facebook(token.to_owned())
        } else {
            AccountAuth::instagram(token.to_owned())
        };
        let e = match self.graph.account_info(&auth, account).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        tracing::info!(account, error = %e, "token check at registration failed");
        Err(match e.class() {
            ErrorClass::Auth => status::invalid("access_token", format!("Meta refused the token: {e}")),
            // Unknown object, no permission: the token does not reach this account.
            ErrorClass::Permanent => status::invalid(
                "access_token",
                format!("the token does not give access to account {account} ({e}); is it the account's token?"),
            ),
            ErrorClass::Throttled { .. } | ErrorClass::Transient => {
                let s = status::graph(&e);
                Status::new(
                    s.code(),
                    format!("cannot check the token with Meta now; register again later: {}", s.message()),
                )
            }
        })
    }
}

#[tonic::async_trait]
impl AccountsService for Gateway {
    async fn register_account(
        &self,
        request: Request<RegisterAccountRequest>,
    ) -> Result<Response<RegisterAccountResponse>, Status> {
        let p = self.principal(&request, Scope::AccountsAdmin)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        v.id("account_id", &r.account_id);
        let login = LoginType::try_from(r.login_type).unwrap_or(LoginType::Unspecified);
        if login == LoginType::Unspecified {
            v.add("login_type", "is required: LOGIN_TYPE_INSTAGRAM or LOGIN_TYPE_FACEBOOK");
        }
        if login == LoginType::Facebook {
            if r.page_id.is_empty() {
                v.add("page_id", "is required with Facebook Login");
            } else {
                v.graph_id("page_id", &r.page_id);
            }
        } else if !r.page_id.is_empty() {
            v.graph_id("page_id", &r.page_id);
        }
        if r.access_token.trim().is_empty() {
            v.add("access_token", "is required");
        } else if r.access_token.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            v.add("access_token", "must not contain spaces or control characters");
        }
        v.timestamp("token_issued_time", r.token_issued_time.as_ref());
        v.timestamp("token_expires_time", r.token_expires_time.as_ref());
        if let (Some(i), Some(e)) = (&r.token_issued_time, &r.token_expires_time)
            && (e.seconds, e.nanos) <= (i.seconds, i.nanos)
        {
            v.add("token_expires_time", "must be after token_issued_time");
        }
        v.check()?;
        p.require_account(&r.account_id)?;
        let account = account_id("account_id", &r.account_id)?;
        self.ensure_connected()?;

        self.check_token(&r.account_id, login, &r.access_token).await?;
        let created = self.store.get(&r.account_id).await.map_err(status::accounts)?.is_none();
        let now = igrelay_core::time::now();
        self.audit(
            &account,
            AuditAction::AccountRegister,
            AuditRecord {
                audit_id: format!("account_register:{}:{}", r.account_id, status::random_id()?),
                account_id: r.account_id.clone(),
                action: AuditAction::AccountRegister.token().into(),
                caller: Some(p.caller()),
                time: Some(now),
                command_id: String::new(),
                method: REGISTER.into(),
                detail: format!(
                    "{} login{}",
                    if login == LoginType::Facebook { "facebook" } else { "instagram" },
                    if created { ", new account" } else { ", replaced" }
                ),
            },
        )
        .await?;
        let stored = self
            .store
            .put(
                Account {
                    account_id: r.account_id.clone(),
                    login_type: login as i32,
                    page_id: r.page_id,
                    app_id: r.app_id,
                    username: r.username,
                    token_issued_time: Some(r.token_issued_time.unwrap_or(now)),
                    token_expires_time: r.token_expires_time,
                    ..Default::default()
                },
                &r.access_token,
            )
            .await
            .map_err(status::accounts)?;
        tracing::info!(account = %r.account_id, caller = %p.key_id, created, "account registered");
        Ok(Response::new(RegisterAccountResponse { account: Some(stored), created }))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let p = self.principal(&request, Scope::AccountsRead)?;
        self.ensure_connected()?;
        let accounts = self
            .store
            .list()
            .await
            .map_err(status::accounts)?
            .into_iter()
            .filter(|a| p.may_act_for(&a.account_id))
            .collect();
        Ok(Response::new(ListAccountsResponse { accounts }))
    }

    async fn get_account(&self, request: Request<GetAccountRequest>) -> Result<Response<GetAccountResponse>, Status> {
        let p = self.principal(&request, Scope::AccountsRead)?;
        let r = request.into_inner();
        account_id("account_id", &r.account_id)?;
        p.require_account(&r.account_id)?;
        self.ensure_connected()?;
        let account = self
            .store
            .get(&r.account_id)
            .await
            .map_err(status::accounts)?
            .ok_or_else(|| Status::not_found(format!("account {} is not registered", r.account_id)))?;
        Ok(Response::new(GetAccountResponse { account: Some(account) }))
    }

    async fn remove_account(
        &self,
        request: Request<RemoveAccountRequest>,
    ) -> Result<Response<RemoveAccountResponse>, Status> {
        let p = self.principal(&request, Scope::AccountsAdmin)?;
        let r = request.into_inner();
        let account = account_id("account_id", &r.account_id)?;
        p.require_account(&r.account_id)?;
        self.ensure_connected()?;
        if self.store.get(&r.account_id).await.map_err(status::accounts)?.is_none() {
            return Err(Status::not_found(format!("account {} is not registered", r.account_id)));
        }
        self.audit(
            &account,
            AuditAction::AccountRemove,
            AuditRecord {
                audit_id: format!("account_remove:{}:{}", r.account_id, status::random_id()?),
                account_id: r.account_id.clone(),
                action: AuditAction::AccountRemove.token().into(),
                caller: Some(p.caller()),
                time: Some(igrelay_core::time::now()),
                method: REMOVE.into(),
                ..Default::default()
            },
        )
        .await?;
        self.store.remove(&r.account_id).await.map_err(status::accounts)?;
        tracing::info!(account = %r.account_id, caller = %p.key_id, "account removed");
        Ok(Response::new(RemoveAccountResponse {}))
    }
}
