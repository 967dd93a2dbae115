//! Kubernetes resource quantities, parsed to an exact value so `1Gi` and `1073741824` compare equal.

use std::fmt;

/// A quantity as an exact count of nano-units (10^-9), wide enough for every suffix up to `Ei`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a Kubernetes quantity ({reason}); use forms like 500m, 64Mi, 1Gi or 1e3")]
pub struct QuantityError {
    input: String,
    reason: &'static str,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let error = |reason| QuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() || s.len() > 64 {
            return Err(error("empty or too long"));
        }
        let (negative, unsigned) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(error("no digits"));
        }
        if fraction.contains('.') {
            return Err(error("more than one decimal point"));
        }
        let (multiplier, divisor) = suffix_scale(suffix).ok_or_else(|| error("unknown suffix"))?;
        let digits = format!("{whole}{fraction}");
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| error("number out of range"))?
        };
        let fraction_scale = 10i128
            .checked_pow(fraction.len() as u32)
            .ok_or_else(|| error("too many decimal places"))?;
        let nanos = mantissa
            .checked_mul(NANO)
            .and_then(|v| v.checked_mul(multiplier))
            .ok_or_else(|| error("number out of range"))?
            / fraction_scale
            / divisor;
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// The value rounded up to a whole number, as Kubernetes does for byte sizes.
    pub fn ceil_units(self) -> i128 {
        (self.nanos + NANO - 1).div_euclid(NANO)
    }
}

/// (multiplier, divisor) for a suffix: binary (Ki…Ei), decimal (n…E), or a decimal exponent (e3, E-2).
fn suffix_scale(suffix: &str) -> Option<(i128, i128)> {
    let binary = |power: u32| Some((1i128 << (10 * power), 1));
    match suffix {
        "" => Some((1, 1)),
        "n" => Some((1, 1_000_000_000)),
        "u" => Some((1, 1_000_000)),
        "m" => Some((1, 1_000)),
        "k" => Some((1_000, 1)),
        "M" => Some((1_000_000, 1)),
        "G" => Some((1_000_000_000, 1)),
        "T" => Some((1_000_000_000_000, 1)),
        "P" => Some((1_000_000_000_000_000, 1)),
        "E" => Some((1_000_000_000_000_000_000, 1)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().ok()?;
            if !(-9..=18).contains(&power) {
                return None;
            }
            let scale = 10i128.pow(power.unsigned_abs());
            Some(if power >= 0 { (scale, 1) } else { (1, scale) })
        }
        _ => None,
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO == 0 {
            write!(f, "{}", self.nanos / NANO)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_encodings_are_equal() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("500m"), q("0.5"));
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1k"), q("1e3"));
        assert_eq!(q("64Mi"), q("67108864"));
        assert_eq!(q("100m"), q(".1"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        assert_ne!(q("1G"), q("1Gi"));
    }

    #[test]
    fn malformed_quantities_are_rejected_with_the_input_named() {
        for bad in ["", "abc", "1.2.3", "1Xi", "Gi", "1e99", "1 Gi"] {
            let error = Quantity::parse(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn ceil_rounds_fractions_up() {
        assert_eq!(Quantity::parse("1.5").unwrap().ceil_units(), 2);
        assert_eq!(Quantity::parse("1Mi").unwrap().ceil_units(), 1 << 20);
    }
}
