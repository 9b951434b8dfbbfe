//! Numbers on the command line: one parser for every numeric argument
//! (addresses, ranges, space indices), so `0x10`, `16` and `0x1_0` mean the
//! same wherever a number is taken.
//!
//! The functions are clap value parsers: clap prints their error after
//! "invalid value 'TEXT' for 'ARG':", so the messages do not repeat the
//! text. Signs are refused here with a clear message rather than by clap
//! ("unexpected argument '-0'"): the numeric arguments accept values that
//! start with `-` for that reason.

/// A number in hex (`0x…`) or decimal, `_` allowed between digits,
/// surrounding blanks ignored. `what` names the kind of number in the
/// messages ("address", "space index").
fn parse(s: &str, what: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.strip_prefix('-')
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Err(format!("not a valid {what}: it is negative"));
    }
    let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (t, 10),
    };
    let digits = digits.replace('_', "");
    // `from_str_radix` would take a leading `+`; a number here is digits only.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "not a valid {what}: not a number (use decimal or 0x-prefixed hex)"
        ));
    }
    u64::from_str_radix(&digits, radix)
        .map_err(|_| format!("not a valid {what}: more than 64 bits"))
}

/// A physical or virtual address.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    parse(s, "address")
}

/// The index of a space among the roots (`--space`).
pub fn parse_space(s: &str) -> Result<u32, String> {
    let n = parse(s, "space index")?;
    u32::try_from(n).map_err(|_| "not a valid space index: too large".to_string())
}

/// `START..END` (END exclusive), both addresses.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| "not a range (use START..END)".to_string())?;
    let (a, b) = (parse_addr(a)?, parse_addr(b)?);
    if b < a {
        return Err("not a valid range: it ends before it starts".into());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_decimal_agree() {
        for s in ["16", "0x10", "0X10", "0x1_0", " 16 ", "1_6"] {
            assert_eq!(parse_addr(s), Ok(16), "{s}");
        }
        assert_eq!(parse_space("0x1"), Ok(1));
        assert_eq!(parse_range("0x10..32"), Ok((16, 32)));
        assert_eq!(parse_addr("0xffff_ffff_ffff_ffff"), Ok(u64::MAX));
    }

    #[test]
    fn bad_numbers_say_why() {
        assert!(parse_addr("-0x1000").unwrap_err().contains("negative"));
        assert!(parse_space("-1").unwrap_err().contains("negative"));
        for s in ["", "0x", "+5", "0x+5", "zz", "1.5", "0x1g"] {
            assert!(parse_addr(s).unwrap_err().contains("not a number"), "{s:?}");
        }
        assert!(
            parse_addr("0x1_0000_0000_0000_0000")
                .unwrap_err()
                .contains("64 bits")
        );
        assert!(
            parse_space("0x1_0000_0000")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_range("5").unwrap_err().contains("not a range"));
        assert!(parse_range("5..1").unwrap_err().contains("ends before"));
        assert!(parse_range("-5..1").unwrap_err().contains("negative"));
        // An option taken as a value is not a number, not a negative one.
        assert!(parse_addr("--follow").unwrap_err().contains("not a number"));
    }
}
