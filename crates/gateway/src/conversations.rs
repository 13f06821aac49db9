//! `igrelay.v1.ConversationsService`: the Conversations API through `igrelay_graph`, with the
//! account's token from the account store and at most `gateway.conversations_per_s` calls per
//! account and second from this process.

use igrelay_core::v1::{
    AccountStatus, Conversation, ConversationMessage, FindConversationRequest, FindConversationResponse,
    GetMessageRequest, GetMessageResponse, ListConversationsRequest, ListConversationsResponse, ListMessagesRequest,
    ListMessagesResponse, LoginType, MessageDetails, Participant,
};
use igrelay_graph::{AccountAuth, ErrorClass, GraphError};
use tonic::{Request, Response, Status};

use crate::auth::Scope;
use crate::proto::conversations_service_server::ConversationsService;
use crate::server::Gateway;
use crate::status::{self, Violations};

impl Gateway {
    /// Authorises, finds the account's credentials and takes a rate slot.
    async fn graph_auth<T>(
        &self,
        request: &Request<T>,
        account: &str,
        extra: impl FnOnce(&mut Violations),
    ) -> Result<AccountAuth, Status> {
        let p = self.principal(request, Scope::ConversationsRead)?;
        let mut v = Violations::new();
        v.id("account_id", account);
        extra(&mut v);
        v.check()?;
        p.require_account(account)?;
        self.ensure_connected()?;
        let (acct, token) = self
            .store
            .credentials(account)
            .await
            .map_err(status::accounts)?
            .ok_or_else(|| Status::not_found(format!("account {account} is not registered")))?;
        if acct.status == AccountStatus::NeedsReauth as i32 {
            return Err(Status::failed_precondition(format!(
                "account {account} needs re-authorisation: {}",
                acct.status_reason
            )));
        }
        self.limiter.acquire(account).await.map_err(|wait| {
            Status::resource_exhausted(format!(
                "Conversations API limit of {} calls/s for account {account}: retry in {} ms",
                self.cfg.conversations_per_s,
                wait.as_millis()
            ))
        })?;
        let token = token.expose().to_owned();
        Ok(if acct.login_type == LoginType::Facebook as i32 {
            AccountAuth::facebook(token)
        } else {
            AccountAuth::instagram(token)
        })
    }

    /// Maps a Graph failure; a refused token also marks the account.
    async fn graph_failed(&self, account: &str, e: GraphError) -> Status {
        if e.class() == ErrorClass::Auth {
            crate::refresh::mark_needs_reauth(self, account, &e.to_string()).await;
        }
        tracing::info!(account, error = %e, "graph call failed");
        status::graph(&e)
    }
}

#[tonic::async_trait]
impl ConversationsService for Gateway {
    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        let account = request.get_ref().account_id.clone();
        let auth = self.graph_auth(&request, &account, |_| {}).await?;
        let r = request.into_inner();
        let after = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let page = match self.graph.conversations_page(&auth, &account, None, after).await {
            Ok(p) => p.value,
            Err(e) => return Err(self.graph_failed(&account, e).await),
        };
        Ok(Response::new(ListConversationsResponse {
            next_page_token: page.next_cursor().unwrap_or_default(),
            conversations: page
                .data
                .into_iter()
                .map(|c| Conversation { conversation_id: c.id, updated_time: c.updated_time.unwrap_or_default() })
                .collect(),
        }))
    }

    async fn find_conversation(
        &self,
        request: Request<FindConversationRequest>,
    ) -> Result<Response<FindConversationResponse>, Status> {
        let account = request.get_ref().account_id.clone();
        let user = request.get_ref().user_id.clone();
        let auth = self.graph_auth(&request, &account, |v| v.graph_id("user_id", &user)).await?;
        let found = match self.graph.conversation_with(&auth, &account, &user).await {
            Ok(c) => c.value,
            Err(e) => return Err(self.graph_failed(&account, e).await),
        };
        let c = found
            .ok_or_else(|| Status::not_found(format!("account {account} has no conversation with user {user}")))?;
        Ok(Response::new(FindConversationResponse {
            conversation: Some(Conversation {
                conversation_id: c.id,
                updated_time: c.updated_time.unwrap_or_default(),
            }),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let account = request.get_ref().account_id.clone();
        let conversation = request.get_ref().conversation_id.clone();
        let auth = self.graph_auth(&request, &account, |v| v.graph_id("conversation_id", &conversation)).await?;
        // The page token is Meta's `after` cursor, passed through untouched (opaque to callers).
        let token = &request.get_ref().page_token;
        let after = (!token.is_empty()).then_some(token.as_str());
        let page = match self.graph.conversation_messages_page(&auth, &conversation, after, None).await {
            Ok(p) => p.value,
            Err(e) => return Err(self.graph_failed(&account, e).await),
        };
        Ok(Response::new(ListMessagesResponse {
            next_page_token: page.next_cursor().unwrap_or_default(),
            messages: page
                .data
                .into_iter()
                .map(|m| ConversationMessage {
                    message_id: m.id,
                    created_time: m.created_time.unwrap_or_default(),
                    is_unsupported: m.is_unsupported.unwrap_or(false),
                })
                .collect(),
        }))
    }

    async fn get_message(&self, request: Request<GetMessageRequest>) -> Result<Response<GetMessageResponse>, Status> {
        let account = request.get_ref().account_id.clone();
        let mid = request.get_ref().message_id.clone();
        let auth = self.graph_auth(&request, &account, |v| v.graph_id("message_id", &mid)).await?;
        let m = match self.graph.message_details(&auth, &mid).await {
            Ok(m) => m.value,
            Err(e) => return Err(self.graph_failed(&account, e).await),
        };
        let participant = |p: igrelay_graph::conversations::Participant| Participant {
            id: p.id,
            username: p.username.unwrap_or_default(),
        };
        let urls = m
            .attachments
            .map(|page| {
                page.data
                    .into_iter()
                    .filter_map(|a| {
                        a.file_url.or_else(|| url_in(a.image_data.as_ref())).or_else(|| url_in(a.video_data.as_ref()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(GetMessageResponse {
            message: Some(MessageDetails {
                message_id: m.id,
                created_time: m.created_time.unwrap_or_default(),
                from: m.from.map(participant),
                to: m.to.map(|t| t.data.into_iter().map(participant).collect()).unwrap_or_default(),
                text: m.message.unwrap_or_default(),
                attachment_urls: urls,
                is_unsupported: m.is_unsupported.unwrap_or(false),
            }),
        }))
    }
}

fn url_in(v: Option<&serde_json::Value>) -> Option<String> {
    v?.get("url")?.as_str().map(str::to_owned)
}
