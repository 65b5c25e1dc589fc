//! Stripe Connect OAuth for Standard accounts: the authorize URL, the code and
//! refresh-token exchanges (through the `oauth2` crate, on the process's one
//! reqwest client) and deauthorization. OAuth errors have OAuth's shape
//! (`{"error":"invalid_grant","error_description":…}`), not the API's.

use std::fmt;
use std::time::Instant;

use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthorizationCode, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    ExtraTokenFields, HttpRequest, HttpResponse, RefreshToken, RequestTokenError,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::StripeClient;
use crate::metrics::{self, Via};
use crate::redact::redact;

/// What a Connect grant may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthScope {
    /// Act on the account.
    ReadWrite,
    /// Only read it.
    ReadOnly,
}

impl OAuthScope {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "read_write",
            Self::ReadOnly => "read_only",
        }
    }

    /// Parses the wire value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read_write" => Some(Self::ReadWrite),
            "read_only" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// Whether `s` looks like a Connect client id (`ca_` and 16 to 64 letters or digits).
pub fn is_client_id(s: &str) -> bool {
    s.strip_prefix("ca_").is_some_and(|rest| {
        (16..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Whether `s` looks like an account id (`acct_` and 8 to 64 letters or digits).
pub fn is_account_id(s: &str) -> bool {
    s.strip_prefix("acct_").is_some_and(|rest| {
        (8..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The parameters of Stripe's authorize URL.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams<'a> {
    /// `ca_…`
    pub client_id: &'a str,
    /// The grant asked for.
    pub scope: Option<OAuthScope>,
    /// The unguessable, single-use value that authenticates the callback.
    pub state: &'a str,
    /// One of the platform's registered redirect URIs.
    pub redirect_uri: &'a str,
    /// `login` or `register`.
    pub stripe_landing: Option<&'a str>,
    /// Ask the user to sign in even if they are.
    pub always_prompt: bool,
    /// Prefill values: `(field, value)` for `stripe_user[field]`.
    pub stripe_user: &'a [(String, String)],
}

/// The fields of `stripe_user[…]` Stripe documents for prefilling.
pub const STRIPE_USER_FIELDS: &[&str] = &[
    "email",
    "url",
    "country",
    "phone_number",
    "business_name",
    "business_type",
    "first_name",
    "last_name",
    "dob_day",
    "dob_month",
    "dob_year",
    "street_address",
    "city",
    "state",
    "zip",
    "physical_product",
    "product_description",
    "currency",
];

/// Stripe's fields in a token response beyond OAuth's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StripeTokenFields {
    /// The connected account.
    pub stripe_user_id: String,
    /// Whether the grant is for live mode.
    #[serde(default)]
    pub livemode: bool,
    /// The account's publishable key.
    #[serde(default)]
    pub stripe_publishable_key: Option<String>,
}

impl ExtraTokenFields for StripeTokenFields {}

type StripeTokenResponse = StandardTokenResponse<StripeTokenFields, BasicTokenType>;

type TokenClient = Client<
    BasicErrorResponse,
    StripeTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A grant: what the code or refresh exchange returned.
pub struct Grant {
    /// The connected account (`acct_…`).
    pub stripe_user_id: String,
    /// Live or test mode.
    pub livemode: bool,
    /// The scope granted.
    pub scope: Option<OAuthScope>,
    /// The access token (a secret key of the account; legacy use only).
    pub access_token: SecretString,
    /// The refresh token, if Stripe sent one.
    pub refresh_token: Option<SecretString>,
    /// The account's publishable key.
    pub publishable_key: Option<String>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("stripe_user_id", &self.stripe_user_id)
            .field("livemode", &self.livemode)
            .field("scope", &self.scope)
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// A failed OAuth call. Messages never carry a token or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Stripe refused: an OAuth error code (`invalid_grant`, …) and its description.
    #[error("Stripe refused the request: {code}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// `invalid_grant`, `invalid_client`, `invalid_request`, `invalid_scope`, …
        code: String,
        /// Stripe's description, redacted.
        description: Option<String>,
    },
    /// Stripe could not be reached or answered something that is not OAuth.
    #[error("Stripe's Connect service could not be reached or answered unexpectedly: {0}")]
    Unavailable(String),
}

impl OAuthError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl StripeClient {
    /// Stripe's authorize URL on the Connect base, for the end user's browser.
    pub fn authorize_url(&self, params: &AuthorizeParams<'_>) -> Url {
        let mut url = self.connect_url("oauth/authorize");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", params.client_id);
            if let Some(scope) = params.scope {
                q.append_pair("scope", scope.as_str());
            }
            q.append_pair("state", params.state);
            q.append_pair("redirect_uri", params.redirect_uri);
            if let Some(landing) = params.stripe_landing {
                q.append_pair("stripe_landing", landing);
            }
            if params.always_prompt {
                q.append_pair("always_prompt", "true");
            }
            for (field, value) in params.stripe_user {
                q.append_pair(&format!("stripe_user[{field}]"), value);
            }
        }
        url
    }

    /// Exchanges an authorization code (`ac_…`) for a grant, authenticated
    /// with the platform's secret key.
    pub async fn exchange_code(
        &self,
        platform_key: &SecretString,
        client_id: &str,
        code: &str,
    ) -> Result<Grant, OAuthError> {
        let client = self.token_client(platform_key, client_id)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&OAuthHttp(self.clone()))
            .await
            .map_err(|e| token_error(e, platform_key))?;
        Ok(grant(response))
    }

    /// Exchanges a refresh token for a new grant.
    pub async fn refresh_grant(
        &self,
        platform_key: &SecretString,
        client_id: &str,
        refresh_token: &SecretString,
    ) -> Result<Grant, OAuthError> {
        let client = self.token_client(platform_key, client_id)?;
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .request_async(&OAuthHttp(self.clone()))
            .await
            .map_err(|e| token_error(e, platform_key))?;
        Ok(grant(response))
    }

    /// Disconnects an account from the platform (`POST /oauth/deauthorize`).
    /// An account that is already disconnected counts as done.
    pub async fn deauthorize(
        &self,
        platform_key: &SecretString,
        client_id: &str,
        stripe_user_id: &str,
    ) -> Result<(), OAuthError> {
        let url = self.connect_url("oauth/deauthorize");
        let started = Instant::now();
        let response = self
            .http()
            .post(url)
            .bearer_auth(platform_key.expose_secret())
            .form(&[("client_id", client_id), ("stripe_user_id", stripe_user_id)])
            .send()
            .await;
        record(&response, started);
        let response = response
            .map_err(|e| OAuthError::Unavailable(redact(&e.to_string(), None).into_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| OAuthError::Unavailable(redact(&e.to_string(), None).into_string()))?;
        if status.is_success() {
            return Ok(());
        }
        let refused = serde_json::from_slice::<BasicErrorResponse>(&body).ok();
        match refused {
            Some(e) if status.is_client_error() => {
                let description = e
                    .error_description()
                    .map(|d| redact(d, Some(platform_key)).into_string());
                // Stripe answers invalid_client "…not connected to your platform"
                // when the grant is already gone: the goal is reached.
                let gone = *e.error() == BasicErrorResponseType::InvalidClient
                    && description
                        .as_deref()
                        .is_some_and(|d| d.contains("not connected"));
                if gone {
                    return Ok(());
                }
                Err(OAuthError::Refused {
                    code: error_code(e.error()),
                    description,
                })
            }
            _ => Err(OAuthError::Unavailable(format!(
                "HTTP {} from the deauthorize endpoint",
                status.as_u16()
            ))),
        }
    }

    fn connect_url(&self, path: &str) -> Url {
        let mut url = self.config().connect_base.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{path}"));
        url.set_query(None);
        url
    }

    fn token_client(
        &self,
        platform_key: &SecretString,
        client_id: &str,
    ) -> Result<TokenClient, OAuthError> {
        let token_url = TokenUrl::from_url(self.connect_url("oauth/token"));
        Ok(Client::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(platform_key.expose_secret().to_owned()))
            // Stripe takes the platform key as `client_secret` in the form body.
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url))
    }

    /// Sends one OAuth request on the shared client (the `oauth2` crate's
    /// HTTP hook), keeping Stripe's status, headers and body.
    async fn send_oauth(&self, request: HttpRequest) -> Result<HttpResponse, OAuthTransportError> {
        let request =
            reqwest::Request::try_from(request).map_err(|e| OAuthTransportError(e.to_string()))?;
        let started = Instant::now();
        let response = self.http().execute(request).await;
        record(&response, started);
        let response = response
            .map_err(|e| OAuthTransportError(redact(&e.to_string(), None).into_string()))?;
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| OAuthTransportError(e.to_string()))?;
        builder
            .body(body.to_vec())
            .map_err(|e| OAuthTransportError(e.to_string()))
    }
}

/// Counts one Connect OAuth call in the Stripe metrics.
fn record(response: &Result<reqwest::Response, reqwest::Error>, started: Instant) {
    match response {
        Ok(r) => metrics::answered(Via::Connect, r.status(), started.elapsed()),
        Err(_) => metrics::unanswered(Via::Connect, started.elapsed()),
    }
}

/// The `oauth2` crate's HTTP hook on the shared client. A named type with a
/// boxed `Send` future (not a closure) keeps the callers' futures `Send`.
struct OAuthHttp(StripeClient);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = OAuthTransportError;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<HttpResponse, OAuthTransportError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.0.send_oauth(request))
    }
}

/// A transport failure under the `oauth2` crate.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OAuthTransportError(String);

fn grant(response: StripeTokenResponse) -> Grant {
    let extra = response.extra_fields();
    Grant {
        stripe_user_id: extra.stripe_user_id.clone(),
        livemode: extra.livemode,
        scope: response
            .scopes()
            .and_then(|s| s.first())
            .and_then(|s| OAuthScope::parse(s.as_str())),
        access_token: SecretString::from(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|t| SecretString::from(t.secret().clone())),
        publishable_key: extra.stripe_publishable_key.clone(),
    }
}

/// OAuth's error code, bounded and masked: a non-standard code is text from
/// outside like any other.
fn error_code(kind: &BasicErrorResponseType) -> String {
    let code: String = kind.as_ref().chars().take(64).collect();
    redact(&code, None).into_string()
}

/// Codes (`ac_…`) and refresh tokens (`rt_…`) are masked by their shape; the
/// platform key is masked verbatim too.
fn token_error(
    e: RequestTokenError<OAuthTransportError, BasicErrorResponse>,
    platform_key: &SecretString,
) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(r) => OAuthError::Refused {
            code: error_code(r.error()),
            description: r
                .error_description()
                .map(|d| redact(d, Some(platform_key)).into_string()),
        },
        RequestTokenError::Request(t) => {
            OAuthError::Unavailable(redact(&t.0, Some(platform_key)).into_string())
        }
        RequestTokenError::Parse(_, body) => OAuthError::Unavailable(format!(
            "an answer that is not OAuth's ({} bytes)",
            body.len()
        )),
        RequestTokenError::Other(m) => {
            OAuthError::Unavailable(redact(&m, Some(platform_key)).into_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::ClientConfig;

    const PLATFORM: &str = "sk_test_51HplatformKEY0123456789abcdef";
    const CLIENT_ID: &str = "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhtbwm";

    fn client(connect: &MockServer) -> StripeClient {
        StripeClient::new(ClientConfig {
            connect_base: Url::parse(&connect.uri()).unwrap(),
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn key() -> SecretString {
        SecretString::from(PLATFORM.to_owned())
    }

    #[tokio::test]
    async fn the_authorize_url_carries_every_parameter_on_the_connect_base() {
        let connect = MockServer::start().await;
        let c = client(&connect);
        let prefill = vec![("email".to_owned(), "a@b.co".to_owned())];
        let url = c.authorize_url(&AuthorizeParams {
            client_id: CLIENT_ID,
            scope: Some(OAuthScope::ReadWrite),
            state: "st4te",
            redirect_uri: "https://app.example/cb",
            stripe_landing: Some("login"),
            always_prompt: false,
            stripe_user: &prefill,
        });
        assert!(
            url.as_str()
                .starts_with(&format!("{}/oauth/authorize?", connect.uri()))
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("response_type".into(), "code".into()),
                ("client_id".into(), CLIENT_ID.into()),
                ("scope".into(), "read_write".into()),
                ("state".into(), "st4te".into()),
                ("redirect_uri".into(), "https://app.example/cb".into()),
                ("stripe_landing".into(), "login".into()),
                ("stripe_user[email]".into(), "a@b.co".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_code_is_exchanged_with_the_platform_key_in_the_body() {
        let connect = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(body_string_contains("grant_type=authorization_code"))
            .and(body_string_contains("code=ac_123"))
            .and(body_string_contains(format!("client_secret={PLATFORM}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "sk_test_accessTOKEN0123456789",
                "refresh_token": "rt_refreshTOKEN0123456789",
                "token_type": "bearer",
                "stripe_publishable_key": "pk_test_pub",
                "stripe_user_id": "acct_1Connected0001",
                "livemode": false,
                "scope": "read_write"
            })))
            .expect(1)
            .mount(&connect)
            .await;
        let grant = client(&connect)
            .exchange_code(&key(), CLIENT_ID, "ac_123")
            .await
            .unwrap();
        assert_eq!(grant.stripe_user_id, "acct_1Connected0001");
        assert!(!grant.livemode);
        assert_eq!(grant.scope, Some(OAuthScope::ReadWrite));
        assert_eq!(
            grant.access_token.expose_secret(),
            "sk_test_accessTOKEN0123456789"
        );
        assert_eq!(
            grant.refresh_token.as_ref().unwrap().expose_secret(),
            "rt_refreshTOKEN0123456789"
        );
        let debug = format!("{grant:?}");
        assert!(
            !debug.contains("accessTOKEN") && !debug.contains("refreshTOKEN"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn oauth_errors_keep_their_code_and_lose_any_secret() {
        let connect = MockServer::start().await;
        Mock::given(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": "invalid_grant",
                "error_description": format!("Authorization code does not exist: ac_123 (key {PLATFORM})")
            })))
            .mount(&connect)
            .await;
        let err = client(&connect)
            .exchange_code(&key(), CLIENT_ID, "ac_123")
            .await
            .unwrap_err();
        let OAuthError::Refused { code, description } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(code, "invalid_grant");
        let description = description.as_deref().unwrap();
        assert!(description.starts_with("Authorization code does not exist"));
        assert!(!description.contains(PLATFORM) && !err.to_string().contains(PLATFORM));
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn an_unreachable_connect_service_is_transient() {
        // A port nobody listens on (wiremock pools its servers, so a dropped
        // MockServer may answer for another test).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = StripeClient::new(ClientConfig {
            connect_base: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            ..ClientConfig::default()
        })
        .unwrap();
        let err = c
            .exchange_code(&key(), CLIENT_ID, "ac_1")
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let err = c
            .deauthorize(&key(), CLIENT_ID, "acct_1Connected0001")
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    #[tokio::test]
    async fn refresh_and_deauthorize_speak_stripes_forms() {
        let connect = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains("refresh_token=rt_old"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "sk_test_new", "refresh_token": "rt_new", "token_type": "bearer",
                "stripe_user_id": "acct_1Connected0001", "livemode": true, "scope": "read_only"
            })))
            .mount(&connect)
            .await;
        Mock::given(method("POST"))
            .and(path("/oauth/deauthorize"))
            .and(header(
                "authorization",
                format!("Bearer {PLATFORM}").as_str(),
            ))
            .and(body_string_contains(format!("client_id={CLIENT_ID}")))
            .and(body_string_contains("stripe_user_id=acct_1Connected0001"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"stripe_user_id": "acct_1Connected0001"})),
            )
            .expect(1)
            .mount(&connect)
            .await;
        let c = client(&connect);
        let grant = c
            .refresh_grant(&key(), CLIENT_ID, &SecretString::from("rt_old".to_owned()))
            .await
            .unwrap();
        assert!(grant.livemode);
        assert_eq!(grant.scope, Some(OAuthScope::ReadOnly));
        assert_eq!(grant.refresh_token.unwrap().expose_secret(), "rt_new");
        c.deauthorize(&key(), CLIENT_ID, "acct_1Connected0001")
            .await
            .unwrap();
    }

    #[test]
    fn ids_are_recognised_by_shape() {
        assert!(is_client_id(CLIENT_ID));
        assert!(!is_client_id("ac_FkyHCg7X8mlvCUdMDao4mMxagUfhtbwm"));
        assert!(!is_client_id("ca_short"));
        assert!(is_account_id("acct_1Connected0001"));
        assert!(!is_account_id("acct_1<script>"));
    }
}
