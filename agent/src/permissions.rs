//! Validation of DCV permissions files (`PermissionsFile` of CreateSessions and
//! UpdateSessionPermissions) before they reach the DCV server.
//!
//! The format is the one of the DCV Administrator Guide ("Understanding permissions files" and its pages
//! on groups, aliases and permissions): optional `#import PATH` lines, then INI-like sections `[groups]`,
//! `[aliases]` and `[permissions]`; `#` and `;` start comments.
//! - `[groups]`: `name = member, member…`. The name may carry the `group:` prefix (as Research and
//!   Engineering Studio writes `group:ideaadmin=user:clusteradmin`); members are users (optionally
//!   `user:NAME`, Windows `DOMAIN\user`), `group:NAME` or `osgroup:NAME`.
//! - `[aliases]`: `name = member, member…`, members being features or other aliases.
//! - `[permissions]`: `actor rule feature…`, features separated by spaces. The actor is a user
//!   (optionally `user:NAME`), `group:NAME`, `osgroup:NAME`, `%owner%` or `%any%`; the rule `allow`,
//!   `disallow` or `deny`; each feature a DCV feature (`display`, `clipboard-copy`, the `builtin` alias…)
//!   or an alias of `[aliases]`, whatever characters its name uses (`admin_profile-allow`).
//!
//! Only what the format cannot read is refused, each time naming the line and the reason: a line outside
//! a section, an unknown section, a definition without `=` or name, a permission without actor, rule or
//! feature, an unknown rule or `%reference%`, a prefix without a name, and names holding the format's own
//! separators (`,`, `=`, `[`, `]`, `%`, or spaces in an alias). Whether a feature or alias name exists is
//! left to the DCV server: its features change between versions (`extensions-client` is recent) and
//! `#import`ed files may define aliases, so the agent cannot know every name DCV accepts.

/// Largest permissions file accepted, in bytes (the contract's bound, checked by the gateway and placement
/// too).
pub use switchboard_proto::contract::PERMISSIONS_FILE_MAX_BYTES as MAX_BYTES;

/// The rules of a `[permissions]` line.
const RULES: [&str; 3] = ["allow", "disallow", "deny"];
/// The built-in references an actor may be.
const REFERENCES: [&str; 2] = ["%owner%", "%any%"];
/// Prefixes that say what kind of name follows, in actors and group members.
const PREFIXES: [&str; 3] = ["user:", "group:", "osgroup:"];
/// Characters the format uses as separators, so no feature, alias or group name can hold them.
const SEPARATORS: [char; 5] = [',', '=', '[', ']', '%'];

/// The section a line belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Groups,
    Aliases,
    Permissions,
}

/// Checks a permissions file; `Err` says what is wrong and where.
pub fn validate(file: &[u8]) -> Result<(), String> {
    if file.len() > MAX_BYTES {
        return Err(format!("permissions file is larger than {MAX_BYTES} bytes"));
    }
    let text = std::str::from_utf8(file).map_err(|_| "permissions file is not UTF-8 text".to_owned())?;
    // Files written on Windows may start with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut section: Option<Section> = None;
    for (index, raw) in text.lines().enumerate() {
        let at = |reason: String| format!("permissions file line {}: {reason}", index + 1);
        // `#import PATH` is a comment to this check: the DCV server reads the file it names.
        let line = raw.split(['#', ';']).next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            section = Some(match name.trim() {
                "groups" => Section::Groups,
                "aliases" => Section::Aliases,
                "permissions" => Section::Permissions,
                other => return Err(at(format!("unknown section [{other}]"))),
            });
            continue;
        }
        match section {
            None => return Err(at("entry outside a section".into())),
            Some(Section::Permissions) => check_permission(line).map_err(at)?,
            Some(Section::Groups) => check_group(line).map_err(at)?,
            Some(Section::Aliases) => check_alias(line).map_err(at)?,
        }
    }
    Ok(())
}

/// `actor rule feature…`.
fn check_permission(line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [actor, rule, features @ ..] = words.as_slice() else {
        return Err("expected `actor allow|disallow|deny feature…`".into());
    };
    check_actor(actor)?;
    if !RULES.contains(rule) {
        return Err(format!("`{rule}` is not allow, disallow or deny"));
    }
    if features.is_empty() {
        return Err("no feature named".into());
    }
    for feature in features {
        if let Some(separator) = feature.chars().find(|c| SEPARATORS.contains(c)) {
            let hint = if separator == ',' { " (features are separated by spaces)" } else { "" };
            return Err(format!("`{feature}` is not a feature or alias name: it holds `{separator}`{hint}"));
        }
    }
    Ok(())
}

/// A user, `user:`/`group:`/`osgroup:` and a name, or `%owner%` / `%any%`.
fn check_actor(actor: &str) -> Result<(), String> {
    if actor.starts_with('%') {
        return match REFERENCES.contains(&actor) {
            true => Ok(()),
            false => Err(format!("`{actor}` is not a built-in reference (%owner% or %any%)")),
        };
    }
    check_prefixed(actor)
}

/// A name after one of [`PREFIXES`] must not be empty.
fn check_prefixed(name: &str) -> Result<(), String> {
    match PREFIXES.iter().find_map(|prefix| name.strip_prefix(prefix).map(|rest| (prefix, rest))) {
        Some((prefix, rest)) if rest.trim().is_empty() => Err(format!("`{prefix}` is not followed by a name")),
        _ => Ok(()),
    }
}

/// `name = member, member…` → the trimmed name and members (empty items skipped).
fn definition(line: &str) -> Result<(&str, Vec<&str>), String> {
    let Some((name, members)) = line.split_once('=') else {
        return Err("expected `name = members`".into());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("expected `name = members`".into());
    }
    if let Some(separator) = name.chars().find(|c| SEPARATORS.contains(c)) {
        return Err(format!("`{name}` is not a name: it holds `{separator}`"));
    }
    Ok((name, members.split(',').map(str::trim).filter(|member| !member.is_empty()).collect()))
}

/// A `[groups]` line: the name, with or without `group:`; members are actors.
fn check_group(line: &str) -> Result<(), String> {
    let (name, members) = definition(line)?;
    check_prefixed(name)?;
    members.into_iter().try_for_each(check_prefixed)
}

/// An `[aliases]` line: its name and members are used in `[permissions]`, so they hold no spaces.
fn check_alias(line: &str) -> Result<(), String> {
    let (name, members) = definition(line)?;
    if name.contains(char::is_whitespace) {
        return Err(format!("`{name}` is not an alias name: it holds a space"));
    }
    for member in members {
        if member.contains(char::is_whitespace) {
            return Err(format!("`{member}` is not a feature or alias name (members are separated by commas)"));
        }
        if let Some(separator) = member.chars().find(|c| SEPARATORS.contains(c)) {
            return Err(format!("`{member}` is not a feature or alias name: it holds `{separator}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    /// A file as Research and Engineering Studio writes it for a desktop shared with an observer: one alias
    /// per permission profile and rule (`aws/res`, `res/resources/dcv/session_permissions.py`,
    /// `generate_permissions_content`, with the profiles of `base-permission-profile-config.yaml`).
    const RES_SHARED: &str = "[groups]\n\
        group:ideaadmin=user:clusteradmin\n\
        [aliases]\n\
        admin_profile-allow=builtin\n\
        observer_profile-allow=display, pointer, audio-in, audio-out\n\
        observer_profile-deny=clipboard-copy, clipboard-paste, file-download, file-upload, mouse, keyboard, \
        keyboard-sas, touch, stylus, usb, printer, smartcard, webcam, screenshot, unsupervised-access, gamepad\n\
        [permissions]\n\
        bob.smith allow observer_profile-allow\n\
        bob.smith deny observer_profile-deny\n\
        group:ideaadmin allow admin_profile-allow\n\
        %owner% allow admin_profile-allow\n";

    #[test]
    fn accepts_files_as_res_writes_them() {
        assert_eq!(validate(RES_SHARED.as_bytes()), Ok(()));
        // The same for a Windows desktop (CRLF, `Administrator`), and the file of a desktop not shared.
        let windows = RES_SHARED.replace("clusteradmin", "Administrator").replace('\n', "\r\n");
        assert_eq!(validate(windows.as_bytes()), Ok(()));
        let owner_only = "[groups]\ngroup:ideaadmin=user:clusteradmin\n[aliases]\nadmin_profile-allow=builtin\n\
                          [permissions]\ngroup:ideaadmin allow admin_profile-allow\n%owner% allow admin_profile-allow\n";
        assert_eq!(validate(owner_only.as_bytes()), Ok(()));
    }

    #[test]
    fn accepts_files_as_the_guide_writes_them() {
        // The examples of the DCV Administrator Guide's pages on imports, groups, aliases and permissions.
        let file = "#import ../file_path/file\n\
                    [groups]\n\
                    my-group=john, user:jane, group:observers, osgroup:guests\n\
                    group_name=user_1, user:user_2, domain_name\\user_3\n\
                    [aliases]\n\
                    clipboard-management=clipboard-copy, clipboard-paste\n\
                    file-management=file-upload, file-download, clipboard-management\n\
                    [permissions]\n\
                    %owner% allow builtin\n\
                    %any% disallow printer\n\
                    group:my-group allow display file-management mouse\n\
                    osgroup:guests deny file-upload\n\
                    user:jane allow display keyboard\n\
                    ; a comment\n\
                    john allow extensions-client # a newer feature\n";
        assert_eq!(validate(file.as_bytes()), Ok(()));
        assert_eq!(validate(b""), Ok(()), "an empty file grants nothing but is valid");
        assert_eq!(validate("\u{feff}[permissions]\n%owner% allow builtin\n".as_bytes()), Ok(()));
    }

    #[test]
    fn names_the_bad_line_and_the_reason() {
        let error = |file: &str| validate(file.as_bytes()).unwrap_err();
        assert_eq!(error("bob allow display"), "permissions file line 1: entry outside a section");
        assert_eq!(error("[perms]"), "permissions file line 1: unknown section [perms]");
        assert_eq!(
            error("[permissions]\nbob permit display"),
            "permissions file line 2: `permit` is not allow, disallow or deny"
        );
        assert_eq!(error("[permissions]\nbob allow"), "permissions file line 2: no feature named");
        assert_eq!(
            error("[permissions]\nbob"),
            "permissions file line 2: expected `actor allow|disallow|deny feature…`"
        );
        assert_eq!(
            error("[permissions]\nbob allow display, mouse"),
            "permissions file line 2: `display,` is not a feature or alias name: it holds `,` \
             (features are separated by spaces)"
        );
        assert_eq!(
            error("[permissions]\n%owner% allow builtin\n%admins% allow builtin"),
            "permissions file line 3: `%admins%` is not a built-in reference (%owner% or %any%)"
        );
        assert_eq!(
            error("[permissions]\ngroup: allow display"),
            "permissions file line 2: `group:` is not followed by a name"
        );
        assert_eq!(error("[groups]\nadmins"), "permissions file line 2: expected `name = members`");
        assert_eq!(error("[groups]\n = bob"), "permissions file line 2: expected `name = members`");
        assert_eq!(
            error("[groups]\nadmins = bob, osgroup:"),
            "permissions file line 2: `osgroup:` is not followed by a name"
        );
        assert_eq!(
            error("[aliases]\nview = display mouse"),
            "permissions file line 2: `display mouse` is not a feature or alias name (members are separated by commas)"
        );
        assert_eq!(
            error("[aliases]\nmy view = display"),
            "permissions file line 2: `my view` is not an alias name: it holds a space"
        );
        assert_eq!(
            error("[aliases]\nv = a=b"),
            "permissions file line 2: `a=b` is not a feature or alias name: it holds `=`"
        );
        assert_eq!(validate(&[0xff]).unwrap_err(), "permissions file is not UTF-8 text");
        assert!(validate(&vec![b'#'; super::MAX_BYTES + 1]).unwrap_err().contains("larger than"));
    }
}
