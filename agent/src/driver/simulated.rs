//! The simulated driver: sessions that live in the agent's memory.
//!
//! A product feature, not a test double: it lets demos, load tests and CI run the whole broker without DCV
//! hosts. It enforces what a host enforces (one console session, no duplicate ids, `max_virtual_sessions`);
//! per-owner limits are the broker's job. Screenshots are generated PNG or JPEG pictures of a 1920x1080
//! desktop, scaled to the size asked, whose colour depends on the session id, so images of different
//! sessions differ. Client connections are
//! simulated with [`SimulatedDriver::simulate_connection`] and [`SimulatedDriver::simulate_disconnection`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use switchboard_common::time::now_ms;
use switchboard_proto::{CreateSessionSpec, HostSession, ScreenshotImage, SessionType};

use super::{DcvDriver, DriverError, Result};
use crate::identity::fnv1a64;

/// Width of the simulated display in pixels.
pub const DISPLAY_WIDTH: u32 = 1920;
/// Height of the simulated display in pixels.
pub const DISPLAY_HEIGHT: u32 = 1080;
/// The DCV version the simulated driver reports.
pub const SIMULATED_DCV_VERSION: &str = "2024.0.0-simulated";

/// One simulated session and its permissions file.
#[derive(Debug, Clone)]
struct SimulatedSession {
    session: HostSession,
    permissions: Vec<u8>,
}

/// In-memory sessions of one simulated host.
#[derive(Debug, Default)]
pub struct SimulatedDriver {
    /// Maximum virtual sessions; 0 means unlimited.
    max_virtual_sessions: u32,
    /// Sessions by id. A std mutex: it is never held across an await.
    sessions: Mutex<BTreeMap<String, SimulatedSession>>,
}

impl SimulatedDriver {
    /// A host with no sessions, refusing virtual sessions beyond `max_virtual_sessions` (0: unlimited).
    pub fn new(max_virtual_sessions: u32) -> Self {
        Self { max_virtual_sessions, sessions: Mutex::default() }
    }

    /// A client connects to the session: counts one more connection.
    pub fn simulate_connection(&self, session_id: &str) -> Result<()> {
        self.with_session(session_id, |s| s.session.num_of_connections += 1)
    }

    /// A client disconnects: counts one connection less and records the disconnection time.
    pub fn simulate_disconnection(&self, session_id: &str) -> Result<()> {
        self.with_session(session_id, |s| {
            s.session.num_of_connections = s.session.num_of_connections.saturating_sub(1);
            s.session.last_disconnection_time_unix_ms = now_ms();
        })
    }

    /// The permissions file last set on a session.
    pub fn permissions(&self, session_id: &str) -> Result<Vec<u8>> {
        self.with_session(session_id, |s| s.permissions.clone())
    }

    fn with_session<T>(&self, session_id: &str, f: impl FnOnce(&mut SimulatedSession) -> T) -> Result<T> {
        let mut sessions = self.sessions.lock().expect("simulated sessions lock poisoned");
        let session = sessions.get_mut(session_id).ok_or_else(|| DriverError::SessionNotFound(session_id.into()))?;
        Ok(f(session))
    }
}

#[async_trait]
impl DcvDriver for SimulatedDriver {
    async fn health(&self) -> bool {
        true
    }

    async fn version(&self) -> String {
        SIMULATED_DCV_VERSION.to_owned()
    }

    async fn list_sessions(&self) -> Result<Vec<HostSession>> {
        let sessions = self.sessions.lock().expect("simulated sessions lock poisoned");
        Ok(sessions.values().map(|s| s.session.clone()).collect())
    }

    async fn create_session(&self, session_id: &str, spec: &CreateSessionSpec) -> Result<HostSession> {
        if session_id.is_empty() {
            return Err(DriverError::InvalidRequest("empty session id".into()));
        }
        let session_type = spec.r#type();
        if session_type == SessionType::Unspecified {
            return Err(DriverError::InvalidRequest("session type not set".into()));
        }
        let mut sessions = self.sessions.lock().expect("simulated sessions lock poisoned");
        if sessions.contains_key(session_id) {
            return Err(DriverError::SessionExists(session_id.into()));
        }
        let count_of = |kind: SessionType| sessions.values().filter(|s| s.session.r#type() == kind).count();
        match session_type {
            SessionType::Console if count_of(SessionType::Console) > 0 => {
                return Err(DriverError::ConsoleSessionExists);
            }
            SessionType::Virtual
                if self.max_virtual_sessions > 0
                    && count_of(SessionType::Virtual) >= self.max_virtual_sessions as usize =>
            {
                return Err(DriverError::VirtualSessionLimit(self.max_virtual_sessions));
            }
            _ => {}
        }
        let session = HostSession {
            id: session_id.to_owned(),
            name: spec.name.clone(),
            owner: spec.owner.clone(),
            r#type: session_type as i32,
            max_concurrent_clients: spec.max_concurrent_clients,
            num_of_connections: 0,
            creation_time_unix_ms: now_ms(),
            last_disconnection_time_unix_ms: 0,
            storage_root: spec.storage_root.clone(),
        };
        let permissions = spec.permissions_file.clone();
        sessions.insert(session_id.to_owned(), SimulatedSession { session: session.clone(), permissions });
        Ok(session)
    }

    async fn close_session(&self, session_id: &str) -> Result<()> {
        let mut sessions = self.sessions.lock().expect("simulated sessions lock poisoned");
        match sessions.remove(session_id) {
            Some(_) => Ok(()),
            None => Err(DriverError::SessionNotFound(session_id.into())),
        }
    }

    async fn set_permissions(&self, session_id: &str, permissions: &[u8]) -> Result<()> {
        self.with_session(session_id, |s| s.permissions = permissions.to_vec())
    }

    async fn screenshot(
        &self,
        session_id: &str,
        max_width: u32,
        max_height: u32,
        format: &str,
    ) -> Result<Vec<ScreenshotImage>> {
        self.with_session(session_id, |_| ())?;
        let format = match format.to_ascii_lowercase().as_str() {
            "" | "png" => ImageFormat::Png,
            "jpeg" | "jpg" => ImageFormat::Jpeg,
            other => return Err(DriverError::InvalidRequest(format!("unknown screenshot format `{other}`"))),
        };
        let (width, height) = fit(DISPLAY_WIDTH, DISPLAY_HEIGHT, max_width, max_height);
        let seed = fnv1a64(session_id.as_bytes());
        // Rendering a full-size desktop takes milliseconds of CPU: keep it off the async workers.
        let data = tokio::task::spawn_blocking(move || render_desktop(width, height, seed, format))
            .await
            .map_err(|e| DriverError::Dcv(format!("screenshot task failed: {e}")))??;
        let format = match format {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
        };
        Ok(vec![ScreenshotImage { format: format.into(), data, creation_time_unix_ms: now_ms(), primary: true }])
    }
}

/// The largest size with the display's aspect ratio inside `max_width` x `max_height` (0: no limit), never
/// larger than the display itself and never smaller than 1x1.
pub fn fit(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    let bound = |max: u32, size: u32| if max == 0 { size } else { max.min(size) };
    let (box_width, box_height) = (u64::from(bound(max_width, width)), u64::from(bound(max_height, height)));
    let (width, height) = (u64::from(width), u64::from(height));
    // Integer arithmetic: whichever side of the box binds first sets the scale.
    let (out_width, out_height) = if box_width * height <= box_height * width {
        (box_width, height * box_width / width)
    } else {
        (width * box_height / height, box_height)
    };
    (out_width.max(1) as u32, out_height.max(1) as u32)
}

/// Encodings of simulated screenshots.
#[derive(Debug, Clone, Copy)]
enum ImageFormat {
    Png,
    Jpeg,
}

/// JPEG quality of simulated screenshots.
const JPEG_QUALITY: u8 = 80;

/// A simple desktop: a gradient background in the session's colour, a window with a title bar, a taskbar.
fn render_desktop(width: u32, height: u32, seed: u64, format: ImageFormat) -> Result<Vec<u8>> {
    let base = [(seed & 0xff) as u8, ((seed >> 8) & 0xff) as u8, ((seed >> 16) & 0xff) as u8];
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let v = f64::from(y) / f64::from(height);
        for x in 0..width {
            let u = f64::from(x) / f64::from(width);
            let rgb = if v > 0.96 {
                [40, 40, 48]
            } else if (0.2..0.7).contains(&u) && (0.15..0.19).contains(&v) {
                base.map(|c| c / 2)
            } else if (0.2..0.7).contains(&u) && (0.19..0.65).contains(&v) {
                [236, 236, 236]
            } else {
                base.map(|c| (f64::from(c) * (1.0 - 0.4 * v)) as u8)
            };
            pixels.extend_from_slice(&rgb);
        }
    }
    let mut data = Vec::new();
    if let ImageFormat::Jpeg = format {
        // `fit` keeps images within the 1920x1080 display, so the sizes fit JPEG's 16-bit fields.
        let encoder = jpeg_encoder::Encoder::new(&mut data, JPEG_QUALITY);
        encoder
            .encode(&pixels, width as u16, height as u16, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| DriverError::Dcv(format!("jpeg encoding failed: {e}")))?;
        return Ok(data);
    }
    let mut encoder = png::Encoder::new(&mut data, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let encode_error = |e: png::EncodingError| DriverError::Dcv(format!("png encoding failed: {e}"));
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(&pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(data)
}

#[cfg(test)]
mod tests;
