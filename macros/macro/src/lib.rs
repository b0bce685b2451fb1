use proc_macro::TokenStream; #[proc_macro] pub fn stream(input: TokenStream) -> TokenStream { input }
