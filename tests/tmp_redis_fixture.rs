#![allow(clippy::unwrap_used)]
mod common;
use common::redis::Redis;
use std::net::TcpStream;

#[test]
fn fixture_works() {
    let mut redis = Redis::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(redis.command(&["PING"]), "+PONG");
    assert_eq!(redis.command(&["SET", "k", "v"]), "+OK");
    assert_eq!(redis.command(&["GET", "k"]), "$1\r\nv");
    assert_eq!(redis.command(&["GET", "missing"]), "$-1");
    redis.command(&["SET", "rturn:a", "1"]);
    assert_eq!(redis.command(&["DBSIZE"]), ":2");
    let keys = redis.command(&["KEYS", "rturn:*"]);
    assert_eq!(keys, "*1\r\n$7\r\nrturn:a");
    assert!(redis.command(&["NOPE"]).starts_with("-ERR"));
    assert_eq!(redis.command(&["KEYS", "none:*"]), "*0");
    redis.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    redis.stop(); // idempotent
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["PING"]), "+PONG");
    assert_eq!(redis.command(&["GET", "k"]), "$-1");
    redis.restart(); // restart while running
    assert_eq!(redis.command(&["PING"]), "+PONG");
    let two = Redis::start();
    assert_ne!(two.port(), port);
    drop(two);
}

#[test]
fn restart_waits_for_a_busy_port() {
    let mut redis = Redis::start();
    let port = redis.port();
    redis.stop();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let t = std::time::Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        drop(squatter);
    });
    redis.restart();
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(redis.command(&["PING"]), "+PONG");
}

#[test]
#[should_panic(expected = "could not restart")]
fn restart_refuses_a_foreign_redis() {
    let mut redis = Redis::start();
    let port = redis.port();
    redis.stop();
    let mut foreign = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| redis.restart()));
    foreign.kill().unwrap();
    foreign.wait().unwrap();
    std::panic::resume_unwind(r.unwrap_err());
}
