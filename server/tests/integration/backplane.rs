//! Several instances over one real Redis (`--redis-url`; Debian's `redis-server`, started by
//! the tests on a free port, which `.ci/run` installs): a publisher on one instance reaches
//! subscribers on the others with the same ids, a client resumes on another instance, and a
//! Redis that dies and comes back is survived.

use hyper::StatusCode;
use server::ServerConfig;
use testkit::redis::RedisServer;

use crate::support::{self, SseClient, get, json, post, wait_metric};

fn config(redis: &RedisServer) -> ServerConfig {
    ServerConfig {
        redis_url: Some(redis.url()),
        ..support::config()
    }
}

/// `n` instances on `redis`, each with its backplane readers connected.
async fn instances(redis: &RedisServer, n: usize) -> Vec<server::RunningServer> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let server = support::start(config(redis)).await;
        wait_metric(server.local_addr(), "rt_backplane_up", 1).await;
        out.push(server);
    }
    out
}

/// Reads `n` events from `client`; returns their ids.
async fn ids(client: &mut SseClient, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let event = client.next().await;
        assert_eq!(event.event_type, "notification", "{:?}", event.data);
        out.push(event.last_event_id.parse().expect("numeric id"));
    }
    out
}

/// Publishes `n` notifications on `addr`; returns the ids the server gave them.
async fn publish(addr: std::net::SocketAddr, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let answer = post(addr, "/sse/notifications", "{}").await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        out.push(json(&answer.body)["id"].as_u64().expect("id"));
    }
    out
}

#[tokio::test]
async fn publishers_on_any_instance_reach_subscribers_on_every_instance_with_the_same_ids() {
    let redis = RedisServer::require();
    let servers = instances(&redis, 3).await;
    let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let mut clients = Vec::new();
    for addr in &addrs {
        clients.push(SseClient::connect(*addr, "/sse/notifications").await);
    }
    // 10 from each instance, interleaved: ids 1..=30 in order everywhere.
    let mut published = Vec::new();
    for _ in 0..10 {
        for addr in &addrs {
            published.extend(publish(*addr, 1).await);
        }
    }
    assert_eq!(published, (1..=30).collect::<Vec<u64>>());
    for client in &mut clients {
        assert_eq!(ids(client, 30).await, (1..=30).collect::<Vec<u64>>());
    }
    for addr in &addrs {
        wait_metric(*addr, "rt_backplane_received_total", 30).await;
        wait_metric(*addr, "rt_backplane_published_total", 10).await;
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_instance_exactly_after_its_last_event_id() {
    let redis = RedisServer::require();
    let servers = instances(&redis, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let mut on_a = SseClient::connect(a.local_addr(), "/sse/notifications").await;
    publish(a.local_addr(), 10).await;
    assert_eq!(ids(&mut on_a, 10).await, (1..=10).collect::<Vec<u64>>());
    drop(on_a);
    // Ten more while the client is away; it comes back on the other instance.
    publish(a.local_addr(), 10).await;
    wait_metric(b.local_addr(), "rt_backplane_received_total", 20).await;
    let mut on_b = SseClient::open(
        b.local_addr(),
        "/sse/notifications",
        &[("last-event-id", "10")],
    )
    .await;
    assert_eq!(on_b.status, StatusCode::OK);
    assert_eq!(ids(&mut on_b, 10).await, (11..=20).collect::<Vec<u64>>());
    publish(b.local_addr(), 1).await;
    assert_eq!(ids(&mut on_b, 1).await, [21], "no gap, no duplicate");
    // An instance started later backfills its ring from the stream.
    let c = support::start(config(&redis)).await;
    wait_metric(c.local_addr(), "rt_backplane_received_total", 21).await;
    let mut on_c = SseClient::open(
        c.local_addr(),
        "/sse/notifications",
        &[("last-event-id", "15")],
    )
    .await;
    assert_eq!(ids(&mut on_c, 6).await, (16..=21).collect::<Vec<u64>>());
}

#[tokio::test]
async fn redis_dying_degrades_the_instances_and_they_recover_when_it_returns() {
    let mut redis = RedisServer::require();
    let servers = instances(&redis, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let mut on_b = SseClient::connect(b.local_addr(), "/sse/notifications").await;
    publish(a.local_addr(), 5).await;
    assert_eq!(ids(&mut on_b, 5).await, (1..=5).collect::<Vec<u64>>());

    redis.kill();
    wait_metric(b.local_addr(), "rt_backplane_up", 0).await;
    assert_eq!(get(b.local_addr(), "/healthz").await.body, "degraded\n");
    // Publishing needs Redis: refused, not lost in silence.
    let refused = post(a.local_addr(), "/sse/notifications", "{}").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );

    // Redis comes back empty (no persistence): the instances reconnect, raise its id counter
    // past what they hold, and the stream goes on without a gap or a repeated id.
    redis.restart().expect("redis back");
    wait_metric(a.local_addr(), "rt_backplane_up", 1).await;
    wait_metric(b.local_addr(), "rt_backplane_up", 1).await;
    assert_eq!(get(b.local_addr(), "/healthz").await.body, "ok\n");
    assert_eq!(
        publish(a.local_addr(), 5).await,
        (6..=10).collect::<Vec<u64>>()
    );
    assert_eq!(ids(&mut on_b, 5).await, (6..=10).collect::<Vec<u64>>());
    let reconnects = support::metric(b.local_addr(), "rt_backplane_reconnects_total").await;
    assert!(reconnects >= 1, "{reconnects}");
}

#[tokio::test]
async fn pub_sub_rooms_and_chat_reach_members_on_other_instances_but_not_the_sender() {
    use crate::support::{ws, ws_json, ws_send};
    use serde_json::json;

    let redis = RedisServer::require();
    let servers = instances(&redis, 2).await;
    let (a, b) = (servers[0].local_addr(), servers[1].local_addr());

    // Pub/sub: a subscriber on B, a POST on A.
    let mut sub = ws(b, "/ws/pubsub").await;
    ws_send(&mut sub, json!({"type": "subscribe", "topic": "t"})).await;
    assert_eq!(ws_json(&mut sub).await["type"], "subscribed");
    for n in 0..5 {
        let answer = post(a, "/publish/t", &json!({"n": n}).to_string()).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    }
    for n in 0..5 {
        let msg = ws_json(&mut sub).await;
        assert_eq!(
            (msg["type"].as_str(), msg["data"]["n"].as_u64()),
            (Some("message"), Some(n))
        );
    }

    // Rooms: members on both instances; a broadcast from A reaches B's member, not its sender.
    let mut on_a = ws(a, "/ws/rooms").await;
    let mut on_b = ws(b, "/ws/rooms").await;
    for socket in [&mut on_a, &mut on_b] {
        ws_send(socket, json!({"type": "join", "room": "r"})).await;
        assert_eq!(ws_json(socket).await["type"], "joined");
    }
    ws_send(
        &mut on_a,
        json!({"type": "broadcast", "room": "r", "text": "from a"}),
    )
    .await;
    ws_send(
        &mut on_b,
        json!({"type": "broadcast", "room": "r", "text": "from b"}),
    )
    .await;
    let got_b = ws_json(&mut on_b).await;
    assert_eq!(got_b["text"], "from a", "{got_b}");
    let got_a = ws_json(&mut on_a).await;
    assert_eq!(
        got_a["text"], "from b",
        "{got_a}: a sender never gets its own broadcast"
    );

    // WebSocket chat: a line from A's participant reaches B's.
    let mut chat_b = ws(b, "/ws/chat").await;
    assert_eq!(ws_json(&mut chat_b).await["type"], "welcome");
    let mut chat_a = ws(a, "/ws/chat").await;
    assert_eq!(ws_json(&mut chat_a).await["type"], "welcome");
    ws_send(&mut chat_a, json!({"type": "chat", "text": "across"})).await;
    let line = loop {
        let msg = ws_json(&mut chat_b).await;
        if msg["type"] == "chat" {
            break msg;
        }
        assert_eq!(msg["type"], "join", "{msg}");
    };
    assert_eq!(line["text"], "across");
}

#[tokio::test]
async fn sse_chat_users_are_unique_over_instances_and_posts_reach_every_other_user() {
    let redis = RedisServer::require();
    let servers = instances(&redis, 2).await;
    let (a, b) = (servers[0].local_addr(), servers[1].local_addr());
    let mut x = SseClient::connect(a, "/sse/chat").await;
    let mut y = SseClient::connect(b, "/sse/chat").await;
    let user = |e: wire::sse::Event| json(&e.data)["id"].as_u64().expect("user id");
    let (xid, yid) = (user(x.next().await), user(y.next().await));
    assert_ne!(xid, yid, "ids are unique over the instances");
    // x posts through the other instance; y gets it, x does not.
    let answer = post(b, &format!("/sse/chat/{xid}"), r#"{"text":"hi"}"#).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let got = y.next().await;
    assert_eq!(json(&got.data)["from"], xid);
    assert_eq!(json(&got.data)["text"], "hi");
    let answer = post(a, &format!("/sse/chat/{yid}"), r#"{"text":"hello"}"#).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(
        json(&x.next().await.data)["from"],
        yid,
        "x's next event is y's post"
    );
    // A user no instance holds is refused.
    let unknown = post(a, "/sse/chat/999999", r#"{"text":"?"}"#).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_group_message_lost_while_redis_is_away_is_told_to_the_members_here() {
    use crate::support::{ws, ws_json, ws_send};
    use serde_json::json;

    let mut redis = RedisServer::require();
    let servers = instances(&redis, 1).await;
    let a = servers[0].local_addr();
    let mut sub = ws(a, "/ws/pubsub").await;
    ws_send(&mut sub, json!({"type": "subscribe", "topic": "t"})).await;
    assert_eq!(ws_json(&mut sub).await["type"], "subscribed");

    redis.kill();
    wait_metric(a, "rt_backplane_up", 0).await;
    post(a, "/publish/t", &json!({"n": 1}).to_string()).await;
    wait_metric(a, "rt_backplane_publish_errors_total", 1).await;
    redis.restart().expect("redis back");
    wait_metric(a, "rt_backplane_up", 1).await;
    let answer = post(a, "/publish/t", &json!({"n": 2}).to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let notice = ws_json(&mut sub).await;
    assert_eq!(
        (notice["type"].as_str(), notice["missed"].as_u64()),
        (Some("lagged"), Some(1))
    );
    let next = ws_json(&mut sub).await;
    assert_eq!(next["data"]["n"], 2);
}
