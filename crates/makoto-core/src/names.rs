//! Enums whose values are written as fixed names (in statements, columns and reports): each
//! name is declared once, beside its variant, and gives `as_str`, `parse`, `Display` and serde.

/// Declares an enum of named values. `what` names the concept in parse errors.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// The name as written.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
            /// The value named `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( $text => Some($name::$variant), )*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("unknown ", $what, " {:?}"), s))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    named_enum! {
        /// A test enum.
        pub enum Color ("color") {
            Red = "red",
            /// Documented.
            DarkBlue = "dark-blue",
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for c in [Color::Red, Color::DarkBlue] {
            assert_eq!(Color::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Color>(&json).unwrap(), c);
        }
        assert_eq!(Color::DarkBlue.to_string(), "dark-blue");
        let e = serde_json::from_str::<Color>("\"green\"").unwrap_err();
        assert!(e.to_string().contains("unknown color \"green\""), "{e}");
        assert_eq!(Color::parse("Red"), None);
    }
}
