//! Issue 20, "The subscription decides the ceiling" and the interop items of "Revocations and
//! uses that last", over real HTTP against the binary: `streaming.jwt.plan_qualities` caps the
//! quality of the stream token a user JWT obtains (and so the variants its master lists),
//! entitlement values grant only what they plainly grant, user JWTs with non-integer
//! NumericDates are accepted, and a `deviceId` that can never match an `X-Device-Id` header is
//! refused at issuance.

mod common;

use base64::Engine as _;
use common::{admin_key, client, Reply, Sluice, TestOrigin};
use serde_json::{json, Value};

const STREAM_SECRET: &str = "stream-secret-0123456789abcdef";
const JWT_SECRET: &str = "user-jwt-secret-0123456789abcdef";

/// A multivariant playlist as packagers write it: 480p, 720p, 1080p and 2160p variants, each
/// in its own directory.
const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=1500000,RESOLUTION=854x480,CODECS=\"avc1.64001e,mp4a.40.2\"\nv480/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\nv720/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,CODECS=\"avc1.640028,mp4a.40.2\"\nv1080/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=15000000,RESOLUTION=3840x2160,CODECS=\"hvc1.2.4.L150.B0,mp4a.40.2\"\nv2160/index.m3u8\n";

const VARIANTS: [&str; 4] = ["v480", "v720", "v1080", "v2160"];

fn origin() -> common::RunningOrigin {
    let mut o = TestOrigin::new();
    for hash in ["film-open", "film-sub"] {
        o = o.route(
            &format!("/{hash}/master.m3u8"),
            Reply::ok(MASTER, "application/vnd.apple.mpegurl"),
        );
        for v in VARIANTS {
            o = o
                .route(
                    &format!("/{hash}/{v}/index.m3u8"),
                    Reply::ok(
                        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4,\nseg_1.m4s\n#EXT-X-ENDLIST\n",
                        "application/vnd.apple.mpegurl",
                    ),
                )
                .route(
                    &format!("/{hash}/{v}/seg_1.m4s"),
                    Reply::ok(vec![9u8; 500], "video/iso.segment"),
                );
        }
    }
    o.start()
}

/// `jwt_extra` goes under `streaming.jwt` (e.g. a `plan_qualities:` line).
fn config(origin: &common::RunningOrigin, jwt_extra: &str) -> String {
    format!(
        r#"origins:
  bucket: {url}
streaming:
  secret: {STREAM_SECRET}
  jwt:
    secret: {JWT_SECRET}
{jwt_extra}
  contents:
    - id: film-open
      type: MOVIE
      hash: film-open
      token_required: true
    - id: film-sub
      type: MOVIE
      hash: film-sub
      subscription_required: true
      token_required: true
"#,
        url = origin.url()
    )
}

const PLANS: &str = "    plan_qualities: {basic: 720p, premium: 4k, default: 480p}";

fn user_jwt_with(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn user_jwt(subscription: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    user_jwt_with(json!({"sub": "user-1", "exp": now + 600, "subscription": subscription}))
}

/// `POST /api/v2/streaming/token` with a bearer and a raw JSON body; status and body.
async fn post_token(s: &Sluice, bearer: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .header("authorization", format!("Bearer {bearer}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The stream token issued for `quality` (`None`: no `quality` in the body) and the
/// `quality` its claims carry.
async fn issued(
    s: &Sluice,
    bearer: &str,
    content: &str,
    quality: Option<&str>,
) -> (String, String) {
    let mut body = json!({"contentId": content, "contentType": "MOVIE"});
    if let Some(q) = quality {
        body["quality"] = json!(q);
    }
    let (st, v) = post_token(s, bearer, body).await;
    assert_eq!(st, 200, "{content} {quality:?}: {v}");
    let token = v["streamToken"].as_str().unwrap().to_string();
    let q = claims_of(&token)["quality"].as_str().unwrap().to_string();
    (token, q)
}

async fn verified_quality(s: &Sluice, token: &str) -> Value {
    let resp = client()
        .get(s.edge_url(&format!("/api/v2/streaming/verify?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    v["quality"].clone()
}

/// The variant directories a gated master lists for `token`.
async fn listed_variants(s: &Sluice, hash: &str, token: &str) -> Vec<&'static str> {
    let resp = client()
        .get(s.edge_url(&format!("/stream/{hash}/master.m3u8?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("#EXTM3U"), "{body}");
    VARIANTS
        .into_iter()
        .filter(|v| body.contains(&format!("{v}/")))
        .collect()
}

#[tokio::test]
async fn plan_ceiling_caps_the_issued_quality_and_verify_reports_it() {
    let o = origin();
    let s = Sluice::start(&config(&o, PLANS));
    let basic = user_jwt(json!("basic"));
    let premium = user_jwt(json!("premium"));

    // basic: 720p whatever is asked above it; below it the request stands.
    for (asked, want) in [
        (Some("4k"), "720p"),
        (Some("1080p"), "720p"),
        (Some("720p"), "720p"),
        (Some("480p"), "480p"),
        (Some("auto"), "720p"),
        (Some("AUTO"), "720p"),
        (None, "720p"),
    ] {
        for content in ["film-open", "film-sub"] {
            let (token, q) = issued(&s, &basic, content, asked).await;
            assert_eq!(q, want, "basic asked {asked:?} for {content}");
            assert_eq!(verified_quality(&s, &token).await, json!(want));
        }
    }
    // premium: 4k is its ceiling, so `auto` is 4k and a lower request stands.
    for (asked, want) in [
        (Some("4k"), "4k"),
        (Some("auto"), "4k"),
        (None, "4k"),
        (Some("1080p"), "1080p"),
    ] {
        let (token, q) = issued(&s, &premium, "film-sub", asked).await;
        assert_eq!(q, want, "premium asked {asked:?}");
        assert_eq!(verified_quality(&s, &token).await, json!(want));
    }
    // Plan names are compared without case or surrounding blanks.
    let (_, q) = issued(&s, &user_jwt(json!(" Basic ")), "film-sub", Some("4k")).await;
    assert_eq!(q, "720p");

    // A plan the map does not name, `true`, a list of plans, a free user: the `default` entry.
    for claim in [
        json!("gold"),
        json!(true),
        json!(["basic"]),
        json!(["premium", "sport"]),
    ] {
        let (token, q) = issued(&s, &user_jwt(claim.clone()), "film-sub", Some("4k")).await;
        assert_eq!(q, "480p", "{claim}");
        assert_eq!(verified_quality(&s, &token).await, json!("480p"));
    }
    for claim in [json!(false), json!("none"), Value::Null] {
        let (_, q) = issued(&s, &user_jwt(claim.clone()), "film-open", None).await;
        assert_eq!(q, "480p", "{claim}");
    }

    // An operator API key: no ceiling, the operator's backend decides.
    let key = admin_key(&s);
    for (asked, want) in [(Some("4k"), "4k"), (Some("auto"), "auto"), (None, "auto")] {
        let (token, q) = issued(&s, &key, "film-sub", asked).await;
        assert_eq!(q, want, "api key asked {asked:?}");
        assert_eq!(verified_quality(&s, &token).await, json!(want));
    }
}

#[tokio::test]
async fn without_a_default_entry_unknown_plans_have_no_ceiling() {
    let o = origin();
    let s = Sluice::start(&config(
        &o,
        "    plan_qualities:\n      basic: 720p\n      sd: 480p",
    ));
    let (_, q) = issued(&s, &user_jwt(json!("basic")), "film-sub", Some("4k")).await;
    assert_eq!(q, "720p");
    let (_, q) = issued(&s, &user_jwt(json!("sd")), "film-sub", None).await;
    assert_eq!(q, "480p");
    for claim in [json!("gold"), json!(true), json!(["basic"])] {
        let (_, q) = issued(&s, &user_jwt(claim.clone()), "film-sub", Some("4k")).await;
        assert_eq!(q, "4k", "{claim}");
        let (_, q) = issued(&s, &user_jwt(claim.clone()), "film-sub", Some("auto")).await;
        assert_eq!(q, "auto", "{claim}");
    }
}

#[tokio::test]
async fn a_basic_plan_master_lists_no_variant_above_720p() {
    let o = origin();
    let s = Sluice::start(&config(&o, PLANS));
    // Asked for 4k, the basic plan's token opens a master without 1080p or 2160p.
    let (token, _) = issued(&s, &user_jwt(json!("basic")), "film-sub", Some("4k")).await;
    assert_eq!(
        listed_variants(&s, "film-sub", &token).await,
        ["v480", "v720"]
    );
    let (token, _) = issued(&s, &user_jwt(json!("basic")), "film-open", Some("auto")).await;
    assert_eq!(
        listed_variants(&s, "film-open", &token).await,
        ["v480", "v720"]
    );
    // premium (4k) and an API key see every variant: the filter is the plan's, not a blanket one.
    let (token, _) = issued(&s, &user_jwt(json!("premium")), "film-sub", Some("auto")).await;
    assert_eq!(listed_variants(&s, "film-sub", &token).await, VARIANTS);
    let (token, _) = issued(&s, &admin_key(&s), "film-sub", Some("4k")).await;
    assert_eq!(listed_variants(&s, "film-sub", &token).await, VARIANTS);
}

#[tokio::test]
async fn entitlement_grants_only_what_is_plainly_granted() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let body = json!({"contentId": "film-sub", "contentType": "MOVIE", "quality": "auto"});
    for claim in [
        json!("false"),
        json!("no"),
        json!("NO"),
        json!(" off "),
        json!("0"),
        json!("none"),
        json!(""),
        json!([false]),
        json!([""]),
        json!(["no", "false"]),
        json!([]),
        json!(0),
        json!(1),
        json!({"plan": "premium"}),
        Value::Null,
    ] {
        let (st, v) = post_token(&s, &user_jwt(claim.clone()), body.clone()).await;
        assert_eq!(
            (st, v),
            (
                403,
                json!({"statusCode": 403, "message": "Subscription required", "error": "Forbidden"})
            ),
            "{claim}"
        );
    }
    for claim in [
        json!(true),
        json!("premium"),
        json!(["basic"]),
        json!([false, "sport"]),
    ] {
        let (st, v) = post_token(&s, &user_jwt(claim.clone()), body.clone()).await;
        assert_eq!(st, 200, "{claim}: {v}");
    }
    // Content without subscription_required stays open to every signed-in user.
    let (st, _) = post_token(
        &s,
        &user_jwt(json!("false")),
        json!({"contentId": "film-open", "contentType": "MOVIE"}),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn user_jwts_with_fractional_numeric_dates_are_accepted() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let now = chrono::Utc::now().timestamp() as f64;
    let body = json!({"contentId": "film-sub", "contentType": "MOVIE", "quality": "1080p"});
    // RFC 7519 §2: a NumericDate may be non-integer.
    let fractional = user_jwt_with(json!({
        "sub": "user-1",
        "iat": now - 1.25,
        "nbf": now - 10.5,
        "exp": now + 600.5,
        "subscription": "premium",
    }));
    let (st, v) = post_token(&s, &fractional, body.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        claims_of(v["streamToken"].as_str().unwrap())["quality"],
        "1080p"
    );
    // Compared as real numbers: expired and not-yet-valid fractional dates are still refused.
    for claims in [
        json!({"sub": "user-1", "exp": now - 5.5, "subscription": true}),
        json!({"sub": "user-1", "exp": now + 600.5, "nbf": now + 120.5, "subscription": true}),
        json!({"sub": "user-1", "exp": 1e300, "subscription": true}),
        json!({"sub": "user-1", "exp": now + 600.0, "iat": "yesterday", "subscription": true}),
    ] {
        let (st, v) = post_token(&s, &user_jwt_with(claims.clone()), body.clone()).await;
        assert_eq!(
            (st, v),
            (
                401,
                json!({"statusCode": 401, "message": "Unauthorized", "error": "Unauthorized"})
            ),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn a_device_id_no_header_can_carry_is_refused_at_issuance() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let user = user_jwt(json!(true));
    let key = admin_key(&s);
    let with_device =
        |d: &str| json!({"contentId": "film-sub", "contentType": "MOVIE", "deviceId": d});
    for bearer in [&user, &key] {
        for bad in [
            "téléphone-1",
            "device\u{202e}1",
            "device 1",
            "device\t1",
            "dev\u{0}",
            &"d".repeat(129),
        ] {
            let (st, v) = post_token(&s, bearer, with_device(bad)).await;
            assert_eq!(st, 400, "{bad:?}: {v}");
            assert_eq!(v["statusCode"], 400);
            assert!(v["message"].as_str().unwrap().contains("deviceId"), "{v}");
        }
        // A visible-ASCII id is bound, and a header carrying it opens the entry.
        let (st, v) = post_token(&s, bearer, with_device("phone-01:AB_c.9")).await;
        assert_eq!(st, 200, "{v}");
        let token = v["streamToken"].as_str().unwrap();
        assert_eq!(claims_of(token)["deviceId"], "phone-01:AB_c.9");
        let resp = client()
            .get(s.edge_url(&format!("/stream/film-sub/master.m3u8?token={token}")))
            .header("x-device-id", "phone-01:AB_c.9")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    // The X-Device-Id header at issuance is held to the same rule (it was silently dropped,
    // minting an unbound token).
    let resp = client()
        .post(s.edge_url("/api/v2/streaming/token"))
        .header("authorization", format!("Bearer {user}"))
        .header(
            "x-device-id",
            reqwest::header::HeaderValue::from_bytes("téléphone".as_bytes()).unwrap(),
        )
        .json(&json!({"contentId": "film-sub", "contentType": "MOVIE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}
