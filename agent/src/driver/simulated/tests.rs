use super::*;

fn spec(owner: &str, session_type: SessionType) -> CreateSessionSpec {
    CreateSessionSpec {
        name: format!("{owner}'s session"),
        owner: owner.into(),
        r#type: session_type as i32,
        max_concurrent_clients: 2,
        ..Default::default()
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(data: &[u8]) -> (u32, u32) {
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&data[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test]
async fn create_list_close() {
    let driver = SimulatedDriver::new(0);
    let created = driver.create_session("s1", &spec("alice", SessionType::Virtual)).await.unwrap();
    assert_eq!(created.id, "s1");
    assert_eq!(created.owner, "alice");
    assert_eq!(created.r#type(), SessionType::Virtual);
    assert_eq!(created.max_concurrent_clients, 2);
    assert!(created.creation_time_unix_ms > 0);
    driver.create_session("s2", &spec("bob", SessionType::Console)).await.unwrap();

    let ids: Vec<_> = driver.list_sessions().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["s1", "s2"]);

    driver.close_session("s1").await.unwrap();
    assert_eq!(driver.close_session("s1").await, Err(DriverError::SessionNotFound("s1".into())));
    let ids: Vec<_> = driver.list_sessions().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["s2"]);
}

#[tokio::test]
async fn rejects_duplicates_a_second_console_and_an_unset_type() {
    let driver = SimulatedDriver::new(0);
    driver.create_session("c1", &spec("alice", SessionType::Console)).await.unwrap();
    let duplicate = driver.create_session("c1", &spec("alice", SessionType::Virtual)).await;
    assert_eq!(duplicate, Err(DriverError::SessionExists("c1".into())));
    let second = driver.create_session("c2", &spec("bob", SessionType::Console)).await;
    assert_eq!(second, Err(DriverError::ConsoleSessionExists));
    let unset = driver.create_session("x", &spec("bob", SessionType::Unspecified)).await;
    assert!(matches!(unset, Err(DriverError::InvalidRequest(_))));
}

#[tokio::test]
async fn enforces_max_virtual_sessions_only() {
    let driver = SimulatedDriver::new(2);
    driver.create_session("v1", &spec("alice", SessionType::Virtual)).await.unwrap();
    driver.create_session("v2", &spec("alice", SessionType::Virtual)).await.unwrap();
    let third = driver.create_session("v3", &spec("bob", SessionType::Virtual)).await;
    assert_eq!(third, Err(DriverError::VirtualSessionLimit(2)));
    // The console session does not count against the virtual limit.
    driver.create_session("c1", &spec("bob", SessionType::Console)).await.unwrap();
    driver.close_session("v1").await.unwrap();
    driver.create_session("v3", &spec("bob", SessionType::Virtual)).await.unwrap();
}

#[tokio::test]
async fn screenshots_fit_the_box_and_keep_the_aspect_ratio() {
    let driver = SimulatedDriver::new(0);
    driver.create_session("s1", &spec("alice", SessionType::Virtual)).await.unwrap();
    let images = driver.screenshot("s1", 200, 200, "png").await.unwrap();
    assert_eq!(images.len(), 1);
    assert!(images[0].primary);
    assert_eq!(images[0].format, "png");
    assert_eq!(png_size(&images[0].data), (200, 112));

    let images = driver.screenshot("s1", 640, 100, "PNG").await.unwrap();
    assert_eq!(png_size(&images[0].data), (177, 100));
}

#[test]
fn fit_never_exceeds_the_display() {
    assert_eq!(fit(1920, 1080, 4000, 4000), (1920, 1080));
    assert_eq!(fit(1920, 1080, 0, 0), (1920, 1080));
    assert_eq!(fit(1920, 1080, 0, 540), (960, 540));
    assert_eq!(fit(1920, 1080, 1, 1), (1, 1));
}

#[tokio::test]
async fn screenshots_of_different_sessions_differ() {
    let driver = SimulatedDriver::new(0);
    driver.create_session("s1", &spec("alice", SessionType::Virtual)).await.unwrap();
    driver.create_session("s2", &spec("alice", SessionType::Virtual)).await.unwrap();
    let first = driver.screenshot("s1", 64, 64, "png").await.unwrap();
    let second = driver.screenshot("s2", 64, 64, "png").await.unwrap();
    assert_ne!(first[0].data, second[0].data);
}

#[tokio::test]
async fn screenshot_errors_are_clear() {
    let driver = SimulatedDriver::new(0);
    let missing = driver.screenshot("nope", 64, 64, "png").await;
    assert_eq!(missing, Err(DriverError::SessionNotFound("nope".into())));
    driver.create_session("s1", &spec("alice", SessionType::Virtual)).await.unwrap();
    assert!(matches!(driver.screenshot("s1", 64, 64, "gif").await, Err(DriverError::InvalidRequest(_))));
}

#[tokio::test]
async fn simulated_connections_update_the_inventory() {
    let driver = SimulatedDriver::new(0);
    driver.create_session("s1", &spec("alice", SessionType::Virtual)).await.unwrap();
    driver.simulate_connection("s1").unwrap();
    driver.simulate_connection("s1").unwrap();
    let session = &driver.list_sessions().await.unwrap()[0];
    assert_eq!(session.num_of_connections, 2);
    assert_eq!(session.last_disconnection_time_unix_ms, 0);

    driver.simulate_disconnection("s1").unwrap();
    let session = &driver.list_sessions().await.unwrap()[0];
    assert_eq!(session.num_of_connections, 1);
    assert!(session.last_disconnection_time_unix_ms > 0);
    assert_eq!(driver.simulate_connection("nope"), Err(DriverError::SessionNotFound("nope".into())));
}

#[tokio::test]
async fn permissions_are_kept_per_session() {
    let driver = SimulatedDriver::new(0);
    let mut with_permissions = spec("alice", SessionType::Virtual);
    with_permissions.permissions_file = b"[permissions]\n%owner% allow builtin\n".to_vec();
    driver.create_session("s1", &with_permissions).await.unwrap();
    assert_eq!(driver.permissions("s1").unwrap(), with_permissions.permissions_file);
    driver.set_permissions("s1", b"new").await.unwrap();
    assert_eq!(driver.permissions("s1").unwrap(), b"new");
    assert_eq!(driver.set_permissions("nope", b"x").await, Err(DriverError::SessionNotFound("nope".into())));
}

/// Width and height of a baseline JPEG (its SOF0 segment).
fn jpeg_size(data: &[u8]) -> (u32, u32) {
    assert_eq!(&data[..2], [0xff, 0xd8], "JPEG start of image");
    assert_eq!(&data[data.len() - 2..], [0xff, 0xd9], "JPEG end of image");
    let mut at = 2;
    loop {
        assert_eq!(data[at], 0xff, "segment marker");
        let marker = data[at + 1];
        let length = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        if marker == 0xc0 {
            let be16 = |i: usize| u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            return (be16(at + 7), be16(at + 5));
        }
        at += 2 + length;
    }
}

#[tokio::test]
async fn png_and_jpeg_screenshots_have_the_size_asked() {
    let driver = SimulatedDriver::new(0);
    driver.create_session("s1", &spec("alice", SessionType::Virtual)).await.unwrap();
    for (max_width, max_height, expected) in [(320, 240, (320, 180)), (0, 0, (1920, 1080)), (100, 50, (88, 50))] {
        let png = driver.screenshot("s1", max_width, max_height, "png").await.unwrap();
        assert_eq!((png[0].format.as_str(), png[0].primary), ("png", true));
        assert_eq!(png_size(&png[0].data), expected);
        let jpeg = driver.screenshot("s1", max_width, max_height, "JPEG").await.unwrap();
        assert_eq!(jpeg[0].format, "jpeg");
        assert_eq!(jpeg_size(&jpeg[0].data), expected);
    }
}
