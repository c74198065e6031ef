//! Closed sets of values that are stored and sent as text: run and step statuses, kinds,
//! sources, severities. Each set is an enum declared with [`text_enum!`], which is the one place
//! its spelling lives: `as_str` and `FromStr` (and so serde, and with the `sqlx` feature the
//! database's TEXT columns) all come from the one list of variants. A text that names no value
//! is an [`UnknownValue`] naming the text, never a panic and never a default.

use std::fmt;

/// A text that names no value of a closed set, e.g. `unknown run status "done"; queued,
/// running, succeeded, failed, timed_out or cancelled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// What the set is (`run status`, `severity`).
    pub what: &'static str,
    /// The text as found.
    pub value: String,
    /// The spellings of the set's values, in order.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}; ", self.what, self.value)?;
        f.write_str(&one_of(self.expected))
    }
}

impl std::error::Error for UnknownValue {}

/// `a`, `a or b`, `a, b or c`.
pub fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Declares an enum whose values are spelled once: `ALL`, `SPELLINGS`, `as_str`, `FromStr`,
/// `Display`, serde as the same strings, and (feature `sqlx`) TEXT in the database.
///
/// ```ignore
/// text_enum! {
///     /// Doc of the enum.
///     pub enum Colour("colour") {
///         Red = "red",
///         DarkBlue = "dark_blue",
///     }
/// }
/// ```
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How each value of [`Self::ALL`] is written, in the same order.
            pub const SPELLINGS: &'static [&'static str] = &[$($text),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::text::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::text::UnknownValue {
                        what: $what,
                        value: s.to_string(),
                        expected: $name::SPELLINGS,
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::text::text_serde!($name);
        $crate::text::text_sqlx!($name);
    };
}

/// Serde as the value's text (`Display` out, `FromStr` in).
macro_rules! text_serde {
    ($name:ty) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}

/// With the `sqlx` feature: the value is TEXT in the database (`Display` to bind, `FromStr` to
/// read), so a row holding an unknown text fails to decode with an error naming it.
macro_rules! text_sqlx {
    ($name:ty) => {
        #[cfg(feature = "sqlx")]
        impl ::sqlx::Type<::sqlx::Any> for $name {
            fn type_info() -> <::sqlx::Any as ::sqlx::Database>::TypeInfo {
                <str as ::sqlx::Type<::sqlx::Any>>::type_info()
            }

            fn compatible(ty: &<::sqlx::Any as ::sqlx::Database>::TypeInfo) -> bool {
                <str as ::sqlx::Type<::sqlx::Any>>::compatible(ty)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'q> ::sqlx::Encode<'q, ::sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <::sqlx::Any as ::sqlx::Database>::ArgumentBuffer,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <::std::string::String as ::sqlx::Encode<'q, ::sqlx::Any>>::encode(self.to_string(), buf)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'r> ::sqlx::Decode<'r, ::sqlx::Any> for $name {
            fn decode(
                value: <::sqlx::Any as ::sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let text = <&'r str as ::sqlx::Decode<'r, ::sqlx::Any>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

pub(crate) use {text_enum, text_serde, text_sqlx};

#[cfg(test)]
mod tests {
    use super::*;

    text_enum! {
        /// A set for the tests.
        enum Colour("colour") {
            Red = "red",
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn every_value_round_trips_and_an_unknown_text_is_named() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>(), Ok(*c));
            assert_eq!(serde_json::to_string(c).unwrap(), format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<Colour>(&format!("\"{c}\"")).unwrap(), *c);
        }
        let e = "Red".parse::<Colour>().unwrap_err();
        assert_eq!(e.to_string(), "unknown colour \"Red\"; red or dark_blue");
        let e = serde_json::from_str::<Colour>("\"green\"").unwrap_err();
        assert!(e.to_string().contains("unknown colour \"green\"; red or dark_blue"), "{e}");
    }

    #[test]
    fn lists_read_as_prose() {
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b"]), "a or b");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
    }
}
