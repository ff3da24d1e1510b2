//! Validation of DCV permissions files (`PermissionsFile` of CreateSessions and
//! UpdateSessionPermissions) before they reach the DCV server.
//!
//! The format (DCV Administrator Guide, "Configuring DCV authorization"): INI-like
//! sections `[groups]`, `[aliases]` and `[permissions]`; `#` or `;` start comments.
//! In `[groups]` and `[aliases]` each line is `name = member, member…`; in
//! `[permissions]` each line is `actor allow|deny|disallow feature…` where the
//! actor is a user, `%owner%`, `%any%`, `group:NAME` or `alias:NAME`, and
//! features are lowercase words with `-` (e.g. `builtin`, `display`,
//! `clipboard-copy`). Errors name the line so a client can fix its file.

/// Largest accepted file, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;

/// Checks a permissions file; `Err` says what is wrong and where.
pub fn validate(file: &[u8]) -> Result<(), String> {
    if file.len() > MAX_BYTES {
        return Err(format!("permissions file is larger than {MAX_BYTES} bytes"));
    }
    let text = std::str::from_utf8(file).map_err(|_| "permissions file is not UTF-8 text".to_owned())?;
    let mut section: Option<&str> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.split(['#', ';']).next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            let name = name.trim();
            if !matches!(name, "groups" | "aliases" | "permissions") {
                return Err(format!("permissions file line {number}: unknown section [{name}]"));
            }
            section = Some(match name {
                "groups" => "groups",
                "aliases" => "aliases",
                _ => "permissions",
            });
            continue;
        }
        match section {
            None => return Err(format!("permissions file line {number}: entry outside a section")),
            Some("permissions") => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let [_actor, verb, features @ ..] = words.as_slice() else {
                    return Err(format!("permissions file line {number}: expected `actor allow|deny feature…`"));
                };
                if !matches!(*verb, "allow" | "deny" | "disallow") {
                    return Err(format!("permissions file line {number}: `{verb}` is not allow, deny or disallow"));
                }
                if features.is_empty() {
                    return Err(format!("permissions file line {number}: no feature named"));
                }
                if let Some(bad) =
                    features.iter().find(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                {
                    return Err(format!("permissions file line {number}: `{bad}` is not a feature name"));
                }
            }
            Some(_) => {
                let valid = line.split_once('=').is_some_and(|(name, _)| !name.trim().is_empty());
                if !valid {
                    return Err(format!("permissions file line {number}: expected `name = members`"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_the_documented_format() {
        let file = "[groups]\nadmins = alice, bob\n\n[aliases]\nview = display, mouse\n\n[permissions]\n\
                    %owner% allow builtin # the owner\nbob allow display clipboard-copy\ngroup:admins deny file-upload\n";
        assert_eq!(validate(file.as_bytes()), Ok(()));
        assert_eq!(validate(b""), Ok(()), "an empty file grants nothing but is valid");
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(validate(b"bob allow display").unwrap_err(), "permissions file line 1: entry outside a section");
        assert_eq!(validate(b"[perms]").unwrap_err(), "permissions file line 1: unknown section [perms]");
        assert_eq!(
            validate(b"[permissions]\nbob permit display").unwrap_err(),
            "permissions file line 2: `permit` is not allow, deny or disallow"
        );
        assert_eq!(validate(b"[permissions]\nbob allow").unwrap_err(), "permissions file line 2: no feature named");
        assert_eq!(
            validate(b"[permissions]\nbob").unwrap_err(),
            "permissions file line 2: expected `actor allow|deny feature…`"
        );
        assert_eq!(
            validate(b"[permissions]\nbob allow Display!").unwrap_err(),
            "permissions file line 2: `Display!` is not a feature name"
        );
        assert_eq!(validate(b"[groups]\nadmins").unwrap_err(), "permissions file line 2: expected `name = members`");
        assert_eq!(validate(&[0xff]).unwrap_err(), "permissions file is not UTF-8 text");
    }
}
