//! Turning one broker command into driver calls and exactly one result.

use switchboard_proto::command_result::Payload;
use switchboard_proto::host_command::Action;
use switchboard_proto::{CommandResult, HostCommand, Screenshot};

use crate::driver::{DcvDriver, DriverError};

/// The command's name in traces: `agent create`, `agent close`, ….
pub fn name(command: &HostCommand) -> &'static str {
    match command.action {
        Some(Action::Create(_)) => "agent create",
        Some(Action::Close(_)) => "agent close",
        Some(Action::SetPermissions(_)) => "agent set_permissions",
        Some(Action::Screenshot(_)) => "agent screenshot",
        None => "agent command",
    }
}

/// Runs `command` on `driver` and describes the outcome; failures become the result's `error` text.
pub async fn execute(driver: &dyn DcvDriver, command: HostCommand) -> CommandResult {
    let command_id = command.command_id;
    let outcome: Result<Option<Payload>, DriverError> = match command.action {
        None => Err(DriverError::InvalidRequest("command without an action".into())),
        Some(Action::Create(create)) => {
            let spec = create.spec.unwrap_or_default();
            match crate::permissions::validate(&spec.permissions_file) {
                Err(reason) => Err(DriverError::InvalidRequest(reason)),
                Ok(()) => driver
                    .create_session(&create.session_id, &spec)
                    .await
                    .map(|session| Some(Payload::Session(session))),
            }
        }
        Some(Action::Close(close)) => driver.close_session(&close.session_id).await.map(|()| None),
        Some(Action::SetPermissions(set)) => match crate::permissions::validate(&set.permissions_file) {
            Err(reason) => Err(DriverError::InvalidRequest(reason)),
            Ok(()) => driver.set_permissions(&set.session_id, &set.permissions_file).await.map(|()| None),
        },
        Some(Action::Screenshot(shot)) => driver
            .screenshot(&shot.session_id, shot.max_width, shot.max_height, &shot.format)
            .await
            .map(|images| Some(Payload::Screenshot(Screenshot { images }))),
    };
    match outcome {
        Ok(payload) => CommandResult { command_id, payload, ..Default::default() },
        Err(error) => {
            tracing::warn!(command_id, %error, "host command failed");
            let error_kind = error.kind() as i32;
            CommandResult { command_id, error: error.to_string(), error_kind, payload: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::{
        CloseSessionCommand, CreateSessionCommand, CreateSessionSpec, ScreenshotCommand, SessionType,
    };

    use super::*;
    use crate::driver::simulated::SimulatedDriver;

    fn command(id: &str, action: Action) -> HostCommand {
        HostCommand { command_id: id.into(), action: Some(action), traceparent: String::new() }
    }

    #[tokio::test]
    async fn create_screenshot_close_and_their_payloads() {
        let driver = SimulatedDriver::new(0);
        let spec =
            CreateSessionSpec { owner: "alice".into(), r#type: SessionType::Virtual as i32, ..Default::default() };
        let create = Action::Create(CreateSessionCommand { session_id: "s1".into(), spec: Some(spec) });
        let result = execute(&driver, command("c1", create)).await;
        assert_eq!(result.command_id, "c1");
        assert_eq!(result.error, "");
        assert!(matches!(result.payload, Some(Payload::Session(ref s)) if s.id == "s1" && s.owner == "alice"));

        let shot = Action::Screenshot(ScreenshotCommand {
            session_id: "s1".into(),
            max_width: 32,
            max_height: 32,
            format: "png".into(),
        });
        let result = execute(&driver, command("c2", shot)).await;
        assert!(matches!(result.payload, Some(Payload::Screenshot(ref s)) if s.images.len() == 1), "{result:?}");

        let close = || Action::Close(CloseSessionCommand { session_id: "s1".into() });
        let result = execute(&driver, command("c3", close())).await;
        assert_eq!((result.error.as_str(), result.payload), ("", None));
        let result = execute(&driver, command("c4", close())).await;
        assert_eq!(result.error, "session not found: s1");
    }

    #[tokio::test]
    async fn a_command_without_action_fails_cleanly() {
        let driver = SimulatedDriver::new(0);
        let result =
            execute(&driver, HostCommand { command_id: "c1".into(), action: None, traceparent: String::new() }).await;
        assert_eq!(result.command_id, "c1");
        assert!(result.error.contains("without an action"));
    }
}
