//! Reading script replies (`redis::Value`) into records.

use prost::Message;
use redis::Value;
use switchboard_proto::{EventRecord, QueuedRequest, ServerRecord, SessionRecord};

use crate::{BackendError, BackendResult};

fn malformed(what: &str, value: &Value) -> BackendError {
    BackendError::Corrupt(format!("unexpected redis reply for {what}: {value:?}"))
}

/// The bytes of a bulk or simple string.
pub(super) fn bytes(value: &Value) -> BackendResult<&[u8]> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.as_bytes()),
        other => Err(malformed("a string", other)),
    }
}

/// A string reply as text.
pub(super) fn text(value: &Value) -> BackendResult<String> {
    String::from_utf8(bytes(value)?.to_vec()).map_err(|_| malformed("text", value))
}

/// An integer, sent by Redis as an integer or as decimal text.
pub(super) fn int(value: &Value) -> BackendResult<i64> {
    match value {
        Value::Int(n) => Ok(*n),
        other => text(other)?.parse().map_err(|_| malformed("an integer", other)),
    }
}

/// The elements of an array reply (`nil` is an empty array).
pub(super) fn array(value: Value) -> BackendResult<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(malformed("an array", &other)),
    }
}

/// A script's status word (first element) and the rest of its reply.
pub(super) fn status(value: Value) -> BackendResult<(String, Vec<Value>)> {
    let mut items = array(value)?;
    if items.is_empty() {
        return Err(BackendError::Corrupt("empty script reply".into()));
    }
    let head = items.remove(0);
    Ok((text(&head)?, items))
}

fn decode<M: Message + Default>(id: &[u8], data: &Value) -> BackendResult<M> {
    M::decode(bytes(data)?).map_err(|e| BackendError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(id))))
}

use switchboard_proto::contract::substate::PENDING_PREPARATION;

/// Sessions from a flattened `id, data, rev, server, assigned` reply; the
/// revision field is the authoritative one, and an assignment made since the
/// last full write (`assigned` = `1`) sets the server and substate.
pub(super) fn sessions(value: Value) -> BackendResult<Vec<SessionRecord>> {
    let items = array(value)?;
    items
        .chunks_exact(5)
        .map(|chunk| {
            let mut session: SessionRecord = decode(bytes(&chunk[0])?, &chunk[1])?;
            session.revision = u64::try_from(int(&chunk[2])?).unwrap_or_default();
            if text(&chunk[4])? == "1" {
                assigned(&mut session, text(&chunk[3])?);
            }
            Ok(session)
        })
        .collect()
}

/// Applies an assignment to a record whose bytes predate it.
pub(super) fn assigned(session: &mut SessionRecord, server_id: String) {
    session.server_id = server_id;
    session.substate = PENDING_PREPARATION.to_owned();
}

/// The record returned by the assign script: its bytes and new revision.
pub(super) fn assigned_session(id: &str, fields: &[Value], server_id: &str) -> BackendResult<SessionRecord> {
    let [data, revision] = fields else { return Err(malformed("an assignment", &Value::Array(fields.to_vec()))) };
    let mut session: SessionRecord = decode(id.as_bytes(), data)?;
    session.revision = u64::try_from(int(revision)?).unwrap_or_default();
    assigned(&mut session, server_id.to_owned());
    Ok(session)
}

/// Servers from a flattened `id, data, rev, open, console, virtual, drain` reply:
/// the stored report with its revision, open flag, derived counts and drain deadline.
pub(super) fn servers(value: Value) -> BackendResult<Vec<ServerRecord>> {
    let items = array(value)?;
    items.chunks_exact(7).map(server).collect()
}

/// One server from its seven reply fields.
pub(super) fn server(fields: &[Value]) -> BackendResult<ServerRecord> {
    if fields.len() < 7 {
        return Err(malformed("a server", &Value::Array(fields.to_vec())));
    }
    let mut record: ServerRecord = decode(bytes(&fields[0])?, &fields[1])?;
    record.revision = u64::try_from(int(&fields[2])?).unwrap_or_default();
    record.open = int(&fields[3])? == 1;
    record.console_session_count = u32::try_from(int(&fields[4])?).unwrap_or_default();
    record.virtual_session_count = u32::try_from(int(&fields[5])?).unwrap_or_default();
    record.drain_deadline_unix_ms = int(&fields[6])?;
    Ok(record)
}

/// Queue entries from flattened 10-field rows: id, class, requirements,
/// type, owner, enqueued, deadline, sequence, claim, claimed until.
pub(super) fn queued(items: &[Value]) -> BackendResult<Vec<QueuedRequest>> {
    items
        .chunks_exact(10)
        .map(|row| {
            Ok(QueuedRequest {
                session_id: text(&row[0])?,
                class_id: text(&row[1])?,
                requirements: text(&row[2])?,
                r#type: i32::try_from(int(&row[3])?).unwrap_or_default(),
                owner: text(&row[4])?,
                enqueued_unix_ms: int(&row[5])?,
                deadline_unix_ms: int(&row[6])?,
                sequence: u64::try_from(int(&row[7])?).unwrap_or_default(),
                claim_id: text(&row[8])?,
                claimed_until_unix_ms: int(&row[9])?,
            })
        })
        .collect()
}

/// One stream entry of the event stream, `[id, [field, value, ...]]` (fields as `prelude.lua`'s `emit`
/// writes them).
pub(super) fn event(value: Value) -> BackendResult<EventRecord> {
    let mut entry = array(value)?.into_iter();
    let (Some(id), Some(fields)) = (entry.next(), entry.next()) else {
        return Err(BackendError::Corrupt("event entry without id or fields".into()));
    };
    let id = text(&id)?;
    let (at_ms, _) = crate::events::parse_id(&id)?;
    let mut event = EventRecord { at_unix_ms: i64::try_from(at_ms).unwrap_or(i64::MAX), id, ..Default::default() };
    let fields = array(fields)?;
    for pair in fields.chunks_exact(2) {
        let value = text(&pair[1])?;
        let number = |value: &str| value.parse::<i64>().unwrap_or_default();
        match text(&pair[0])?.as_str() {
            "k" => event.kind = value,
            "s" => event.session_id = value,
            "o" => event.owner = value,
            "v" => event.server_id = value,
            "st" => event.state = i32::try_from(number(&value)).unwrap_or_default(),
            "ps" => event.previous_state = i32::try_from(number(&value)).unwrap_or_default(),
            "r" => event.reason = value,
            "a" => event.availability = value,
            "d" => event.detail = value,
            "q" => event.queue_position = u32::try_from(number(&value)).unwrap_or_default(),
            _ => {}
        }
    }
    Ok(event)
}
