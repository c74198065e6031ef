use serde_json::{Value, json};

use super::eval::{Type, binary_type};
use super::parse::BinOp;
use super::*;

/// A context shaped like a workflow's: an event, a step's outputs, inputs and a loop item.
fn ctx() -> Value {
    json!({
        "event": {
            "type": "price.alert",
            "data": {"symbol": "ETH", "magnitude": 2.6, "tags": ["crypto", "l1"], "note": null}
        },
        "steps": {
            "recall": {"outputs": {"count": 3, "items": [
                {"title": "Merge", "score": 0.9},
                {"title": "Fees", "score": 0.4},
                {"title": "ETF", "score": 0.7}
            ]}},
            "fetch-prices": {"outputs": {"price": 3120.5}}
        },
        "inputs": {"symbol": "ETH", "threshold": 2, "name": "", "limit": "10", "config": "{\"a\": [1, 2]}"},
        "item": "btc"
    })
}

fn eval(src: &str) -> Result<Value, ExprError> {
    Expr::parse(src)?.eval(&ctx())
}

fn err(src: &str) -> ExprError {
    match eval(src) {
        Ok(v) => panic!("{src} gave {v}, expected an error"),
        Err(e) => e,
    }
}

fn assert_table(cases: &[(&str, Value)]) {
    for (src, want) in cases {
        match eval(src) {
            Ok(got) => assert_eq!(&got, want, "{src}"),
            Err(e) => panic!("{src}: {e}"),
        }
    }
}

#[test]
fn literals() {
    assert_table(&[
        ("1", json!(1)),
        ("1.5", json!(1.5)),
        ("-3", json!(-3)),
        ("1e3", json!(1000.0)),
        ("2.5E-1", json!(0.25)),
        ("12345678901234567890", json!(12345678901234567890.0)),
        (r#""a\nb\t\"c\"""#, json!("a\nb\t\"c\"")),
        (r"'it\'s \\ here'", json!("it's \\ here")),
        ("true", json!(true)),
        ("false", json!(false)),
        ("null", json!(null)),
        ("[1, 'a', null, [],]", json!([1, "a", null, []])),
        ("{a: 1, 'b c': [2], in: true,}", json!({"a": 1, "b c": [2], "in": true})),
        ("{}", json!({})),
    ]);
}

#[test]
fn paths_read_the_context_and_missing_is_null() {
    assert_table(&[
        ("event.type", json!("price.alert")),
        ("event.data.magnitude", json!(2.6)),
        ("event.data.missing", json!(null)),
        ("event.data.missing.deeper[3]", json!(null)),
        ("event.data.note", json!(null)),
        // A field of something that is not an object is null too.
        ("event.data.symbol.length", json!(null)),
        ("event.data.tags.first", json!(null)),
        ("event.data.tags[0]", json!("crypto")),
        ("event.data.tags[-1]", json!("l1")),
        ("event.data.tags[-3]", json!(null)),
        ("event.data.tags[2]", json!(null)),
        ("event.data.tags[1.0]", json!("l1")),
        ("event.data.tags['0']", json!(null)),
        ("event.data[0]", json!(null)),
        ("event['data'][\"symbol\"]", json!("ETH")),
        ("steps.recall.outputs.count", json!(3)),
        ("steps.recall.outputs.items[1].title", json!("Fees")),
        ("steps.recall.outputs.items[-1]['score']", json!(0.7)),
        ("steps.fetch-prices.outputs.price", json!(3120.5)),
        ("steps['fetch-prices'].outputs.price", json!(3120.5)),
        ("steps.recall.outputs.count-1", json!(2)),
        ("steps . recall . outputs . count", json!(3)),
        ("item", json!("btc")),
        ("[10, 20, 30][1]", json!(20)),
        ("{a: {b: 5}}.a.b", json!(5)),
        ("split('a,b', ',')[1]", json!("b")),
        ("(event).data.symbol", json!("ETH")),
        ("event.data[event.type == 'price.alert' ? 'symbol' : 'x']", json!("ETH")),
    ]);
}

#[test]
fn arithmetic_follows_json_numbers() {
    assert_table(&[
        ("1 + 2 * 3", json!(7)),
        ("(1 + 2) * 3", json!(9)),
        ("10 - 4 - 3", json!(3)),
        ("2 * 3 % 4", json!(2)),
        ("7 / 2", json!(3.5)),
        ("6 / 3", json!(2)),
        ("7 % 3", json!(1)),
        ("-7 % 3", json!(-1)),
        ("7.5 % 2", json!(1.5)),
        ("0.1 + 0.2", json!(0.30000000000000004)),
        ("2.5 * 2", json!(5.0)),
        ("-(2 + 3)", json!(-5)),
        ("- -2", json!(2)),
        ("-event.data.magnitude", json!(-2.6)),
        ("9223372036854775807 + 1", json!(9223372036854775808.0)),
        ("-9223372036854775807 - 1", json!(i64::MIN)),
        ("'a' + 'b'", json!("ab")),
        ("[1] + [2, [3]]", json!([1, 2, [3]])),
        ("inputs.symbol + '/' + item", json!("ETH/btc")),
    ]);
}

#[test]
fn comparison_equality_and_precedence() {
    assert_table(&[
        ("1 == 1.0", json!(true)),
        ("[1, {a: 2}] == [1.0, {a: 2.0}]", json!(true)),
        ("{a: 1} == {a: 1, b: 2}", json!(false)),
        ("'1' == 1", json!(false)),
        ("null == null", json!(true)),
        ("null == false", json!(false)),
        ("9007199254740993 == 9007199254740992.0", json!(false)),
        ("event.data.note == null", json!(true)),
        ("event.data.missing == null", json!(true)),
        ("event.data.magnitude != null", json!(true)),
        ("2.6 > 2", json!(true)),
        ("event.data.magnitude >= inputs.threshold", json!(true)),
        ("2 <= 2.0", json!(true)),
        ("'abc' < 'abd'", json!(true)),
        ("'B' < 'a'", json!(true)),
        ("1 + 2 == 3", json!(true)),
        ("1 < 2 == 2 < 3", json!(true)),
        ("not 1 == 2", json!(true)),
        ("!true", json!(false)),
        ("!!'x'", json!(true)),
        ("true || false && false", json!(true)),
        ("(true || false) && false", json!(false)),
        ("true or false and false", json!(true)),
        ("not false and false", json!(false)),
        ("event.data.magnitude > 2 ? 'big' : 'small'", json!("big")),
        ("false ? 1 : true ? 2 : 3", json!(2)),
        ("1 > 2 or 3 > 2 ? 'yes' : 'no'", json!("yes")),
    ]);
}

#[test]
fn and_or_return_an_operand_and_short_circuit() {
    assert_table(&[
        ("inputs.name || 'world'", json!("world")),
        ("inputs.symbol or 'x'", json!("ETH")),
        ("0 && 1", json!(0)),
        ("1 && 'yes'", json!("yes")),
        ("null or false", json!(false)),
        ("false and 1 / 0", json!(false)),
        ("true or 1 / 0", json!(true)),
        ("event.data.x != null and event.data.x > 2", json!(false)),
    ]);
}

#[test]
fn membership() {
    assert_table(&[
        ("'crypto' in event.data.tags", json!(true)),
        ("'CRYPTO' in event.data.tags", json!(false)),
        ("'x' not in event.data.tags", json!(true)),
        ("not 'x' in event.data.tags", json!(true)),
        ("1 in [1.0, 2]", json!(true)),
        ("{a: 1} in [{a: 1}]", json!(true)),
        ("null in [null]", json!(true)),
        ("'ETH' in 'WETH'", json!(true)),
        ("'' in 'abc'", json!(true)),
        ("'symbol' in event.data", json!(true)),
        ("'note' in event.data", json!(true)),
        ("'nope' in event.data", json!(false)),
    ]);
}

#[test]
fn functions() {
    assert_table(&[
        ("len('héllo')", json!(5)),
        ("len(event.data.tags)", json!(2)),
        ("len({a: 1})", json!(1)),
        ("len('')", json!(0)),
        ("lower('ÉTH')", json!("éth")),
        ("upper(item)", json!("BTC")),
        ("trim('  x \\n')", json!("x")),
        ("contains(event.data.tags, 'l1')", json!(true)),
        ("contains('hello', 'ell')", json!(true)),
        ("contains({a: 1}, 'b')", json!(false)),
        ("starts_with(event.type, 'price.')", json!(true)),
        ("ends_with(event.type, '.alert')", json!(true)),
        ("split('a,b,,c', ',')", json!(["a", "b", "", "c"])),
        ("split('héj', '')", json!(["h", "é", "j"])),
        ("join(['a', 1, null, true], '-')", json!("a-1--true")),
        ("join([], ',')", json!("")),
        ("replace('a-b-c', '-', ' + ')", json!("a + b + c")),
        ("string(2.5)", json!("2.5")),
        ("string(null)", json!("")),
        ("string([1, 'a'])", json!("[1,\"a\"]")),
        ("string('x')", json!("x")),
        ("string(true)", json!("true")),
        ("number('42')", json!(42)),
        ("number(' -3.5 ')", json!(-3.5)),
        ("number('1e3')", json!(1000.0)),
        ("number(true)", json!(1)),
        ("number(7)", json!(7)),
        ("number(inputs.limit) + 1", json!(11)),
        ("int(3.9)", json!(3)),
        ("int(-3.9)", json!(-3)),
        ("int('42.7')", json!(42)),
        ("int(false)", json!(0)),
        ("round(2.5)", json!(3)),
        ("round(-2.5)", json!(-3)),
        ("round(2.4)", json!(2)),
        ("round(2.567, 2)", json!(2.57)),
        ("round(1234, -2)", json!(1200)),
        ("round(2.567, 2.0)", json!(2.57)),
        ("round(7)", json!(7)),
        ("floor(2.7)", json!(2)),
        ("floor(-2.1)", json!(-3)),
        ("ceil(2.1)", json!(3)),
        ("ceil(4)", json!(4)),
        ("abs(-3)", json!(3)),
        ("abs(-2.5)", json!(2.5)),
        ("min(3, 1, 2)", json!(1)),
        ("max([1, 5.5, 2])", json!(5.5)),
        ("max(steps.recall.outputs.count, 10)", json!(10)),
        ("min([])", json!(null)),
        ("max(4)", json!(4)),
        ("min(1, 1.0)", json!(1)),
        ("default(event.data.note, 5)", json!(5)),
        ("default(event.data.missing, 'x')", json!("x")),
        ("default(event.data.symbol, 5)", json!("ETH")),
        ("default(inputs.name, 'world')", json!("")),
        ("default(null, default(null, 3))", json!(3)),
        ("default(1, 1 / 0)", json!(1)),
        ("exists(event.data.symbol)", json!(true)),
        ("exists(event.data.note)", json!(false)),
        ("exists(event.data.nope.deeper)", json!(false)),
        ("keys({b: 1, a: 2})", json!(["a", "b"])),
        ("values({b: 1, a: 2})", json!([2, 1])),
        ("json({a: [1, 'x']})", json!("{\"a\":[1,\"x\"]}")),
        ("json('x')", json!("\"x\"")),
        ("json(null)", json!("null")),
        ("from_json(inputs.config).a[1]", json!(2)),
        ("from_json('[1, 2]')", json!([1, 2])),
    ]);
}

#[test]
fn truthiness() {
    for v in [json!(false), json!(null), json!(0), json!(0.0), json!(-0.0), json!(""), json!([]), json!({})] {
        assert!(!truthy(&v), "{v}");
    }
    for v in [json!(true), json!(1), json!(-0.5), json!("0"), json!("false"), json!([0]), json!({"a": null})] {
        assert!(truthy(&v), "{v}");
    }
    let cond = Expr::parse("event.data.magnitude > inputs.threshold and 'crypto' in event.data.tags").unwrap();
    assert!(cond.is_true(&ctx()).unwrap());
    assert!(!Expr::parse("steps.recall.outputs.missing").unwrap().is_true(&ctx()).unwrap());
}

/// The exact text of errors users read, with offsets.
#[test]
fn error_messages() {
    let cases: &[(&str, usize, &str, Option<&str>)] = &[
        ("len(x", 5, "expected ')' after the arguments of len, found end of expression", None),
        ("len(1, 2)", 0, "len() takes 1 argument, got 2", None),
        ("round()", 0, "round() takes 1 or 2 arguments, got 0", None),
        ("min()", 0, "min() takes at least 1 argument, got 0", None),
        ("lenght(x)", 0, "unknown function 'lenght'", Some("did you mean 'len'?")),
        ("x + startsWith(a, 'b')", 4, "unknown function 'startsWith'", Some("did you mean 'starts_with'?")),
        ("length(x)", 0, "unknown function 'length'", Some("did you mean 'len'?")),
        ("1 +", 3, "expected a value after '+', found end of expression", None),
        ("1 + * 2", 4, "expected a value after '+', found '*'", None),
        ("a = 1", 2, "'=' is not an operator", Some("compare with '=='")),
        ("a & b", 2, "'&' is not an operator", Some("use '&&' or 'and'")),
        ("1 < 2 < 3", 6, "comparisons do not chain: '<' follows another comparison", None),
        ("a == b != c", 7, "comparisons do not chain: '!=' follows another comparison", None),
        ("x == 'abc", 5, "unterminated string", None),
        (r"'a\qb'", 2, r"unknown escape '\q' in a string", None),
        ("[1, 2", 5, "expected ',' or ']' in the array opened at offset 0, found end of expression", None),
        ("(1", 2, "expected ')' to close the '(' at offset 0, found end of expression", None),
        ("a[1", 3, "expected ']' to close the '[' at offset 1, found end of expression", None),
        ("{a 1}", 3, "expected ':' after the key 'a', found number 1", None),
        ("{a: 1, a: 2}", 7, "the key 'a' appears twice in the object", None),
        ("{1: 2}", 1, "expected a key (a name or a quoted string) in the object, found number 1", None),
        ("a ? b", 5, "expected ':' of the '?' at offset 2, found end of expression", None),
        ("a b", 2, "expected an operator or the end of the expression, found name 'b'", None),
        ("a.", 2, "expected a field name after '.', found end of expression", None),
        ("a.0", 2, "'.0' is not a field name", Some("index an array with [0]")),
        ("2fa", 0, "'2fa' is neither a number nor a name", None),
        ("a $ b", 2, "unexpected character '$'", None),
        ("   ", 0, "the expression is empty", None),
        ("1e999", 0, "the number 1e999 is too large", None),
    ];
    for (src, offset, message, hint) in cases {
        let e = Expr::parse(src).expect_err(src);
        assert_eq!((e.offset, e.message.as_str()), (*offset, *message), "{src}");
        if let Some(hint) = hint {
            assert_eq!(e.hint.as_deref(), Some(*hint), "{src}");
        }
    }
    let negation = Expr::parse("1 + !x").unwrap_err();
    assert_eq!(negation.message, "expected a value after '+', found '!'");
    assert!(negation.hint.unwrap().contains("put the negation in parentheses"));
}

#[test]
fn runtime_errors_name_the_types_and_the_place() {
    let e = err("event.data.magnitude >= '3'");
    assert_eq!((e.offset, e.message.as_str()), (21, "cannot compare number with string"));
    assert_eq!(
        e.to_string(),
        "offset 21: cannot compare number with string; convert one side first, with number(...) or string(...)"
    );
    let pad = " ".repeat(21);
    assert_eq!(
        e.annotate("event.data.magnitude >= '3'"),
        format!(
            "event.data.magnitude >= '3'\n{pad}^ cannot compare number with string\n{pad}  convert one side first, with number(...) or string(...)"
        )
    );

    let cases: &[(&str, usize, &str)] = &[
        ("evnt.type", 0, "unknown name 'evnt'"),
        ("1 / 0", 2, "division by zero"),
        ("5 % (2 - 2)", 2, "division by zero"),
        ("event.data.x + 1", 13, "cannot add null and number"),
        ("'a' + 1", 4, "cannot add string and number"),
        ("'a' - 'b'", 4, "'-' needs two numbers, got string and string"),
        ("-'a'", 0, "'-' needs a number, got string"),
        ("[1] < [2]", 4, "cannot compare array with array"),
        ("1 in 5", 2, "'in' needs an array, a string or an object on its right, got number"),
        (
            "1 in 'abc'",
            2,
            "'in' looks for text in a string or a key in an object, so its left side must be a string, got number",
        ),
        ("len(3)", 4, "len() expects a string, an array or an object, got a number"),
        ("round(1, 'a')", 9, "round() expects a number as its second argument, got a string"),
        ("round(1, 2.5)", 9, "round() takes a whole number of digits from -15 to 15, got 2.5"),
        ("upper(event.data.note)", 6, "upper() expects a string, got null"),
        ("number('abc')", 7, "number() cannot read \"abc\" as a number"),
        ("int(1e30)", 4, "int() cannot fit 1000000000000000000000000000000 in a whole number"),
        (
            "contains('abc', 1)",
            16,
            "contains() looks for text in a string, so its second argument must be a string, got a number",
        ),
        ("min(1, 'a')", 7, "min() expects a number as its second argument, got a string"),
        ("min([1], 2)", 4, "min() compares numbers, but argument 1 is an array"),
        ("max([1, 'a'])", 4, "max() compares numbers, but element 1 of the array is a string"),
        ("replace('abc', '', 'x')", 15, "replace() needs non-empty text to look for"),
        ("[1][1.5]", 4, "an array index must be a whole number, got 1.5"),
        ("event[event.data.note]", 6, "an index must be a number or a string, got null"),
        ("1e300 * 1e300", 6, "the result of '*' is too large for a number"),
    ];
    for (src, offset, message) in cases {
        let e = err(src);
        assert_eq!((e.offset, e.message.as_str()), (*offset, *message), "{src}");
    }
    assert_eq!(err("evnt.type").hint.as_deref(), Some("did you mean 'event'?"));
    assert_eq!(err("stpes.recall").hint.as_deref(), Some("did you mean 'steps'?"));
    assert_eq!(err("zzz").hint.as_deref(), Some("the names available here are event, inputs, item, steps"));
    assert!(err("event.data.x + 1").hint.unwrap().starts_with("null usually means a missing field"));
    assert!(err("from_json('{')").message.starts_with("from_json() could not read its argument as JSON: EOF"));
}

#[test]
fn did_you_mean() {
    let names = ["event", "steps", "inputs", "item"];
    assert_eq!(suggest("evnet", names), Some("event"));
    assert_eq!(suggest("input", names), Some("inputs"));
    assert_eq!(suggest("Steps", names), Some("steps"));
    assert_eq!(suggest("itme", names), Some("item"));
    assert_eq!(suggest("banana", names), None);
    assert_eq!(suggest("x", names), None);
    assert_eq!(suggest("ends_wiht", FUNCS_NAMES), Some("ends_with"));
    assert_eq!(suggest("fromJSON", FUNCS_NAMES), Some("from_json"));
    assert_eq!(func::unknown("toJSON", 0).hint.as_deref(), Some("did you mean 'json'?"));
    assert_eq!(func::unknown("coalesce", 0).hint.as_deref(), Some("did you mean 'default'?"));
    assert!(func::unknown("frobnicate", 0).hint.unwrap().starts_with("the functions are len, lower, upper"));
}

const FUNCS_NAMES: [&str; 4] = ["ends_with", "starts_with", "from_json", "json"];

#[test]
fn static_check_without_a_context() {
    let known = ["event", "steps", "inputs"];
    let check = |src: &str| -> Vec<(usize, String)> {
        Expr::parse(src).unwrap().check(&known).into_iter().map(|e| (e.offset, e.message)).collect()
    };
    let none: Vec<(usize, String)> = Vec::new();
    assert_eq!(check("event.data.x > 2 and steps.a.outputs.ok"), none);
    assert_eq!(check("len(event.x) + len(inputs)"), none);
    assert_eq!(check("default(event.x, 1) < 'a'"), none, "default may give a string");
    assert_eq!(check("event.x ? 1 : 'a'"), none);
    assert_eq!(check("evnt.type == 'x'"), [(0, "unknown name 'evnt'".to_string())]);
    assert_eq!(check("'a' < 3"), [(4, "cannot compare string with number".to_string())]);
    assert_eq!(check("len(event.data) < 'a'"), [(16, "cannot compare number with string".to_string())]);
    assert_eq!(check("lower(event.x) + 1"), [(15, "cannot add string and number".to_string())]);
    assert_eq!(check("upper(len(event.x))"), [(6, "upper() expects a string, got a number".to_string())]);
    assert_eq!(check("upper(3)"), [(6, "upper() expects a string, got a number".to_string())]);
    assert_eq!(check("-lower(event.x)"), [(0, "'-' needs a number, got string".to_string())]);
    assert_eq!(check("event.x / 0"), [(8, "division by zero".to_string())]);
    assert_eq!(check("event.x ? 1 : number('x')"), [(21, "number() cannot read \"x\" as a number".to_string())]);
    assert_eq!(check("event[true]"), [(6, "an index must be a number or a string, got boolean".to_string())]);
    assert_eq!(
        check("(event.a + event.b) * [1]"),
        [(20, "'*' needs two numbers, got number, string or array and array".to_string())]
    );
    // Several problems come back together, in source order, without cascading.
    assert_eq!(
        check("upper(1) + 1 and evnt"),
        [(6, "upper() expects a string, got a number".to_string()), (17, "unknown name 'evnt'".to_string())]
    );
    // Nothing but literals: evaluated, and fine if evaluation is.
    assert_eq!(check("true or 1 / 0"), none);
    let errors = Expr::parse("evnt").unwrap().check(&known);
    assert_eq!(errors[0].hint.as_deref(), Some("did you mean 'event'?"));
    let errors = Expr::parse("len").unwrap().check(&[]);
    assert_eq!(errors[0].hint.as_deref(), Some("'len' is a function; call it as len(...)"));
}

#[test]
fn paths_for_validators() {
    let src = "steps.recall.outputs.count > 1 and event.data['symbol'] == inputs.symbol";
    let paths = Expr::parse(src).unwrap().paths();
    let want = [
        ("steps", vec!["recall", "outputs", "count"], 0),
        ("event", vec!["data", "symbol"], src.find("event").unwrap()),
        ("inputs", vec!["symbol"], src.find("inputs").unwrap()),
    ];
    let got: Vec<(&str, Vec<&str>, usize)> =
        paths.iter().map(|p| (p.root.as_str(), p.fields.iter().map(String::as_str).collect(), p.offset)).collect();
    assert_eq!(got, want);

    let roots = |src: &str| -> Vec<(String, Vec<String>)> {
        Expr::parse(src).unwrap().paths().into_iter().map(|p| (p.root, p.fields)).collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(roots("steps[inputs.id].x"), [("steps".to_string(), s(&[])), ("inputs".to_string(), s(&["id"]))]);
    assert_eq!(roots("item[0].title"), [("item".to_string(), s(&[]))]);
    assert_eq!(roots("len(steps.a.outputs)"), [("steps".to_string(), s(&["a", "outputs"]))]);
    assert_eq!(roots("{a: event.x}.a"), [("event".to_string(), s(&["x"]))]);
    assert_eq!(roots("steps.fetch-prices.outputs"), [("steps".to_string(), s(&["fetch-prices", "outputs"]))]);
    assert_eq!(roots("1 + 2"), []);
}

#[test]
fn templates_keep_types_or_concatenate() {
    let render = |text: &str| Template::parse(text).and_then(|t| t.render(&ctx()));
    let cases = [
        ("{{ steps.recall.outputs.items[0] }}", json!({"title": "Merge", "score": 0.9})),
        ("{{event.data.tags}}", json!(["crypto", "l1"])),
        ("  {{ event.data.magnitude }}\n", json!(2.6)),
        ("{{ event.data.note }}", json!(null)),
        ("{{ 1 }}{{ 2 }}", json!("12")),
        ("Price of {{ inputs.symbol }} moved {{ event.data.magnitude }}%", json!("Price of ETH moved 2.6%")),
        (
            "n={{ event.data.note }};t={{ event.data.tags }};o={{ {a: 1} }}",
            json!("n=;t=[\"crypto\",\"l1\"];o={\"a\":1}"),
        ),
        ("no braces }} here", json!("no braces }} here")),
        ("{{ '{{' }} literal", json!("{{ literal")),
        ("{{ {a: {b: 1}} }}", json!({"a": {"b": 1}})),
        ("{{{a: 1}}}", json!({"a": 1})),
        ("{{ '}}' }}", json!("}}")),
        ("", json!("")),
    ];
    for (text, want) in cases {
        assert_eq!(render(text).unwrap(), want, "{text}");
    }
    assert!(Template::parse("plain }} text").unwrap().is_plain());
    assert!(!Template::parse("{{ 1 }}").unwrap().is_plain());

    let errors: &[(&str, usize, &str)] = &[
        ("{{ len(x }}", 9, "expected ')' after the arguments of len, found '}}'"),
        ("a {{ 1 } b", 7, "expected an operator or '}}', found '}'"),
        ("Hello {{ name", 6, "'{{' at offset 6 is never closed"),
        ("{{ x }} and {{", 12, "'{{' at offset 12 is never closed"),
        ("{{ (1 }}", 6, "expected ')' to close the '(' at offset 3, found '}}'"),
        ("x {{ }}", 2, "empty '{{ }}'"),
        ("{{ 1 + }}", 7, "expected a value after '+', found '}}'"),
        ("{{ \"}}\" ", 0, "'{{' at offset 0 is never closed"),
    ];
    for (text, offset, message) in errors {
        let e = Template::parse(text).expect_err(text);
        assert_eq!((e.offset, e.message.as_str()), (*offset, *message), "{text}");
    }
    // Runtime errors count offsets in the whole text.
    let e = render("Hi {{ evnt }}").unwrap_err();
    assert_eq!((e.offset, e.message.as_str()), (6, "unknown name 'evnt'"));

    let t = Template::parse("{{ inputs.symbol }}: {{ steps.recall.outputs.count + evnt }}").unwrap();
    let roots: Vec<String> = t.paths().into_iter().map(|p| p.root).collect();
    assert_eq!(roots, ["inputs", "steps", "evnt"]);
    let errors = t.check(&["inputs", "steps"]);
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].offset, errors[0].message.as_str()), (53, "unknown name 'evnt'"));
}

#[test]
fn render_value_walks_nested_maps() {
    let with = json!({
        "prompt": "Summarise {{ steps.recall.outputs.count }} items about {{ inputs.symbol }}",
        "items": "{{ steps.recall.outputs.items }}",
        "opts": {
            "limit": "{{ number(inputs.limit) }}",
            "tags": ["{{ event.data.tags[0] }}", "plain", 3, null, true],
        },
        "{{ key }}": "keys stay as written",
    });
    let got = render_value(&with, &ctx()).unwrap();
    assert_eq!(
        got,
        json!({
            "prompt": "Summarise 3 items about ETH",
            "items": ctx()["steps"]["recall"]["outputs"]["items"],
            "opts": {"limit": 10, "tags": ["crypto", "plain", 3, null, true]},
            "{{ key }}": "keys stay as written",
        })
    );

    let bad = json!({"a": {"b c": ["ok", "{{ 1 / 0 }}"]}});
    let e = render_value(&bad, &ctx()).unwrap_err();
    assert_eq!(e.field, "a[\"b c\"][1]");
    assert_eq!(
        e.to_string(),
        "a[\"b c\"][1], offset 5: division by zero; test the divisor first, as in b != 0 ? a / b : 0"
    );

    let errors = check_value(&json!({"x": "{{ evnt.a }}", "y": ["{{ len( }}", "fine {{ inputs.a }}"]}), &["inputs"]);
    let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
    assert_eq!(got, [("x", "unknown name 'evnt'"), ("y[0]", "expected a value after '(', found '}}'")]);
}

#[test]
fn source_and_depth_limits() {
    let long = format!("'{}'", "a".repeat(MAX_SOURCE));
    assert_eq!(Expr::parse(&long).unwrap_err().message, "the expression is 4098 bytes long; the limit is 4096");
    assert!(Expr::parse(&format!("'{}'", "a".repeat(MAX_SOURCE - 2))).is_ok());
    let long_in_template = format!("{{{{ '{}' }}}}", "a".repeat(MAX_SOURCE + 10));
    assert_eq!(
        Template::parse(&long_in_template).unwrap_err().message,
        "the expression inside '{{ }}' is longer than 4096 bytes"
    );

    let too_deep = "the expression nests more than 64 levels deep";
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 6] = [
        ("parentheses", |n| format!("{}1{}", "(".repeat(n), ")".repeat(n))),
        ("arrays", |n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        ("objects", |n| format!("{}1{}", "{a: ".repeat(n), "}".repeat(n))),
        ("minus", |n| format!("{}x", "-".repeat(n))),
        ("not", |n| format!("{}x", "not ".repeat(n))),
        ("calls", |n| format!("{}1{}", "abs(".repeat(n), ")".repeat(n))),
    ];
    for (shape, make) in shapes {
        assert!(Expr::parse(&make(40)).is_ok(), "{shape}");
        assert_eq!(Expr::parse(&make(500)).unwrap_err().message, too_deep, "{shape}");
    }
    // Long flat chains build deep trees too.
    assert!(Expr::parse(&format!("1{}", " + 1".repeat(63))).is_ok());
    assert_eq!(Expr::parse(&format!("1{}", " + 1".repeat(64))).unwrap_err().message, too_deep);
    assert_eq!(Expr::parse(&format!("x{}", ".a".repeat(64))).unwrap_err().message, too_deep);
    assert_eq!(Expr::parse(&format!("{}1", "1 ? 1 : ".repeat(200))).unwrap_err().message, too_deep);
}

#[test]
fn size_and_work_limits() {
    let big = json!({"s": "x".repeat(600_000), "a": vec![0; 60_000], "z": vec![0; 1_000_001]});
    let run = |src: &str| Expr::parse(src).unwrap().eval(&big);
    let too_long = "the result would be longer than 1 MiB";
    let too_many = "the result would have more than 100000 elements";
    assert_eq!(run("s + s").unwrap_err().message, too_long);
    assert_eq!(run("len(upper(s) + 'x')").unwrap(), json!(600_001));
    assert_eq!(run("replace(s, 'x', 'yy')").unwrap_err().message, too_long);
    assert_eq!(run("join([s, s], '')").unwrap_err().message, too_long);
    assert_eq!(run("json([s, s])").unwrap_err().message, too_long);
    assert_eq!(run("string([s, s])").unwrap_err().message, too_long);
    assert_eq!(run("a + a").unwrap_err().message, too_many);
    assert_eq!(run("split(s, '')").unwrap_err().message, too_many);
    assert_eq!(run("len(a + [1])").unwrap(), json!(60_001));
    assert_eq!(run("-1 in z").unwrap_err().message, "the expression needs more than 1000000 steps of work");
    assert_eq!(run("len(z)").unwrap(), json!(1_000_001));
    let t = Template::parse("{{ s }}{{ s }}").unwrap();
    assert_eq!(t.render(&big).unwrap_err().message, too_long);
    assert!(Template::parse(&"x".repeat(MAX_STRING + 1)).is_err());

    let e = Expr::parse("[1, 2, 3] == [1, 2, 3]").unwrap().eval_with_budget(&ctx(), 5).unwrap_err();
    assert_eq!(e.message, "the expression needs more than 5 steps of work");
}

/// The table that gates evaluation is the one the static check uses; this pins down that
/// evaluation fails with a type error exactly where the table says no.
#[test]
fn the_type_table_matches_evaluation() {
    let samples = [
        (Type::Null, json!(null)),
        (Type::Bool, json!(true)),
        (Type::Number, json!(2)),
        (Type::String, json!("a")),
        (Type::Array, json!([1])),
        (Type::Object, json!({"a": 1})),
    ];
    let ops = [
        ("or", BinOp::Or),
        ("and", BinOp::And),
        ("==", BinOp::Eq),
        ("!=", BinOp::Ne),
        ("<", BinOp::Lt),
        ("<=", BinOp::Le),
        (">", BinOp::Gt),
        (">=", BinOp::Ge),
        ("in", BinOp::In),
        ("not in", BinOp::NotIn),
        ("+", BinOp::Add),
        ("-", BinOp::Sub),
        ("*", BinOp::Mul),
        ("/", BinOp::Div),
        ("%", BinOp::Rem),
    ];
    for (sym, op) in ops {
        for (ta, a) in &samples {
            for (tb, b) in &samples {
                let ctx = json!({"a": a, "b": b});
                let result = Expr::parse(&format!("a {sym} b")).unwrap().eval(&ctx);
                let allowed = binary_type(op, *ta, *tb);
                assert_eq!(allowed.is_some(), result.is_ok(), "{a} {sym} {b}: {result:?}");
                if let (Some(types), Ok(v)) = (allowed, result) {
                    assert!(types.has(super::eval::type_of(&v)), "{a} {sym} {b} gave {v}");
                }
            }
        }
    }
}

/// docs/expressions.md shows these errors as a terminal would; keep it true.
#[test]
fn the_reference_shows_real_errors() {
    let reference = include_str!("../../../../docs/expressions.md");
    let exprs = ["len(x", "lenght(event.data.tags)", "1 < x < 5"];
    let evaluated = ["event.data.magnitude >= \"3\"", "event.data.x + 1"];
    let mut shown: Vec<String> = exprs.iter().map(|s| Expr::parse(s).unwrap_err().annotate(s)).collect();
    shown.extend(evaluated.iter().map(|s| err(s).annotate(s)));
    let template = "Hello {{ inputs.name";
    shown.push(Template::parse(template).unwrap_err().annotate(template));
    for block in shown {
        assert!(reference.contains(&block), "docs/expressions.md lacks:\n{block}");
    }
    let e = render_value(&json!({"opts": {"tags": ["{{ evnt }}"]}}), &ctx()).unwrap_err();
    assert!(reference.contains(&format!("`{}`", e.to_string().split(';').next().unwrap())), "{e}");
}

#[test]
fn expressions_are_values() {
    let e = Expr::parse("event.type == 'x'").unwrap();
    let copy = e.clone();
    assert_eq!(e, copy);
    assert!(format!("{e:?}").contains("Root(\"event\")"));
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::*;
    use super::ctx;

    const TOKENS: [&str; 56] = [
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        ".",
        "?",
        "+",
        "-",
        "*",
        "/",
        "%",
        "!",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "&&",
        "||",
        "and",
        "or",
        "not",
        "in",
        "true",
        "false",
        "null",
        "0",
        "1",
        "2.5",
        "-1",
        "1e308",
        "'a'",
        "\"b\"",
        "''",
        "event",
        "data",
        "steps",
        "item",
        "x",
        "len",
        "min",
        "default",
        "split",
        "from_json",
        "json",
        "round",
        "{{",
        "}}",
        "9223372036854775807",
        "'{{'",
        "[-1]",
    ];

    fn exercise(src: &str) {
        if let Ok(e) = Expr::parse(src) {
            let _ = e.eval(&ctx());
            let _ = e.eval(&json!({"x": [1, "a", null, {"y": 2.5}]}));
            let _ = e.check(&["event", "steps"]);
            let _ = e.paths();
        }
        if let Ok(t) = Template::parse(src) {
            let _ = t.render(&ctx());
            let _ = t.check(&["event"]);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Quarters parse back exactly; serde_json's default float reader may be one unit
            // in the last place off for long fractions, which from_json(json(x)) would show.
            (-1_000_000_000i64..1_000_000_000).prop_map(|n| Value::from(n as f64 / 4.0)),
            "[a-zé '\"{}\\\\]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(src in "\\PC{0,60}") {
            exercise(&src);
        }

        #[test]
        fn expression_alphabet_never_panics(src in "[a-z0-9_ .,:?!=<>+*/%()\\[\\]{}'\"\\\\&|-]{0,60}") {
            exercise(&src);
        }

        #[test]
        fn token_sequences_never_panic(tokens in proptest::collection::vec(proptest::sample::select(&TOKENS[..]), 0..24)) {
            exercise(&tokens.join(" "));
            exercise(&tokens.concat());
        }

        #[test]
        fn nesting_is_limited_not_fatal(n in 0usize..300, pick in 0usize..4) {
            let src = match pick {
                0 => format!("{}x{}", "(".repeat(n), ")".repeat(n)),
                1 => format!("{}x", "- ".repeat(n)),
                2 => format!("{}x{}", "len(".repeat(n), ")".repeat(n)),
                _ => format!("x{}", " + x".repeat(n)),
            };
            match Expr::parse(&src) {
                Ok(e) => { let _ = e.eval(&json!({"x": 1})); prop_assert!(n < MAX_DEPTH); }
                Err(e) => { prop_assert!(n >= MAX_DEPTH); prop_assert!(e.message.contains("64 levels")); }
            }
        }

        #[test]
        fn values_equal_themselves_and_survive_json(v in json_value()) {
            let ctx = json!({"x": v});
            let yes = |src: &str| Expr::parse(src).unwrap().eval(&ctx).unwrap() == json!(true);
            prop_assert!(yes("x == x"));
            prop_assert!(yes("x in [x]"));
            prop_assert!(yes("from_json(json(x)) == x"));
            prop_assert!(yes("(not not x) == (x ? true : false)"));
            prop_assert_eq!(Template::parse("{{ x }}").unwrap().render(&ctx).unwrap(), v.clone());
            // string() and a template insert a value the same way.
            let text = Expr::parse("string(x)").unwrap().eval(&ctx).unwrap();
            let rendered = Template::parse("{{ x }}!").unwrap().render(&ctx).unwrap();
            prop_assert_eq!(rendered, Value::String(format!("{}!", text.as_str().unwrap())));
        }

        #[test]
        fn integer_arithmetic_is_exact_or_a_float(a in any::<i64>(), b in any::<i64>()) {
            let ctx = json!({"a": a, "b": b});
            let run = |src: &str| Expr::parse(src).unwrap().eval(&ctx).unwrap();
            let sum = run("a + b");
            match a.checked_add(b) {
                Some(s) => prop_assert_eq!(sum, json!(s)),
                None => prop_assert_eq!(sum, json!(a as f64 + b as f64)),
            }
            prop_assert_eq!(run("a < b"), json!(a < b));
            prop_assert_eq!(run("a == b"), json!(a == b));
            // An integer equals a float only when they are the same number.
            let f = a as f64;
            let ctx = json!({"a": a, "f": f});
            let same = Expr::parse("a == f").unwrap().eval(&ctx).unwrap();
            let two_63 = 2f64.powi(63);
            prop_assert_eq!(same, json!((-two_63..two_63).contains(&f) && f as i64 == a));
        }

        #[test]
        fn plain_text_renders_as_itself(text in "[^{]{0,40}") {
            let t = Template::parse(&text).unwrap();
            prop_assert!(t.is_plain());
            prop_assert_eq!(t.render(&json!({})).unwrap(), Value::String(text));
        }
    }
}
