//! Expected messages and values come from running Gunicorn 27.0.1's
//! `util.import_app("fakemod:" + obj)` against a stub module in
//! /tmp/gvenv/bin/python; a wider randomised comparison (hundreds of
//! thousands of mutated inputs, zero mismatches) was run out of tree.

use super::*;

fn call(spec: &str) -> (String, Vec<Literal>, Vec<(String, Literal)>) {
    match parse(spec).map(|s| s.target) {
        Ok(Target::Call { name, args, kwargs }) => (name, args, kwargs),
        other => panic!("{spec:?}: {other:?}"),
    }
}

fn err(spec: &str) -> String {
    match parse(spec) {
        Err(e) => e.to_string(),
        Ok(s) => panic!("{spec:?} parsed as {s:?}"),
    }
}

fn s(v: &str) -> Literal {
    Literal::Str(v.to_owned())
}

#[test]
fn module_only_means_application() {
    let spec = parse("myproject.wsgi").unwrap();
    assert_eq!(spec.module, "myproject.wsgi");
    assert_eq!(spec.object, "application");
    assert_eq!(spec.target, Target::Attr(vec!["application".into()]));
    assert_eq!(split("a.b:c:d"), ("a.b", "c:d"));
}

#[test]
fn attribute_forms() {
    let t = |spec: &str| parse(spec).unwrap().target;
    assert_eq!(t("m:app"), Target::Attr(vec!["app".into()]));
    assert_eq!(t("m:(app)"), Target::Attr(vec!["app".into()]));
    assert_eq!(t("m:app  # the app\n\n"), Target::Attr(vec!["app".into()]));
    assert_eq!(t("m:\napp\r\n"), Target::Attr(vec!["app".into()]));
    assert_eq!(t("m:match"), Target::Attr(vec!["match".into()]));
    assert_eq!(t("m:été"), Target::Attr(vec!["été".into()]));
    // ferrocorn extension: Gunicorn 27 says "Failed to parse 'obj.attr' ...".
    assert_eq!(t("m:obj.attr"), Target::Attr(vec!["obj".into(), "attr".into()]));
    assert_eq!(t("m:a . b.c"), Target::Attr(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(parse("m:obj.attr").unwrap().object, "obj.attr");
}

#[test]
fn calls_with_literals() {
    assert_eq!(call("m:create_app()"), ("create_app".into(), vec![], vec![]));
    let (name, args, kwargs) = call("m:create_app('x', debug=True, n=-1, t=(1,2))");
    assert_eq!(name, "create_app");
    assert_eq!(args, vec![s("x")]);
    assert_eq!(
        kwargs,
        vec![
            ("debug".into(), Literal::Bool(true)),
            ("n".into(), Literal::Int(-1)),
            ("t".into(), Literal::Tuple(vec![Literal::Int(1), Literal::Int(2)])),
        ]
    );
    let (_, args, _) = call("m:f(None, ..., 0x_ff, 0o17, 0b101, 1_000, -0x10, +7, 00)");
    assert_eq!(
        args,
        vec![
            Literal::None,
            Literal::Ellipsis,
            Literal::Int(255),
            Literal::Int(15),
            Literal::Int(5),
            Literal::Int(1000),
            Literal::Int(-16),
            Literal::Int(7),
            Literal::Int(0),
        ]
    );
    let (_, args, _) = call("m:f(1.5, .5, 5., 1e3, -2.5E-1, 1_0.0_1, 007.5e1, -0.0)");
    let floats: Vec<f64> = args
        .iter()
        .map(|l| match l {
            Literal::Float(f) => *f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(floats, vec![1.5, 0.5, 5.0, 1000.0, -0.25, 10.01, 75.0, -0.0]);
    assert!(floats[7].is_sign_negative());
}

#[test]
fn strings_and_bytes() {
    let (_, args, _) = call(
        r#"m:f('a' "b" u'c', r'\n', b'\x00\777' rb'\d', '\x41\101\u00e9\U0001F600\t\\', '''x'y''', '\8', 'a\
b')"#,
    );
    assert_eq!(
        args,
        vec![s("abc"), s("\\n"), Literal::Bytes(b"\x00\xff\\d".to_vec()), s("AAé😀\t\\"), s("x'y"), s("\\8"), s("ab"),]
    );
}

#[test]
fn containers_and_trailing_commas() {
    let (_, args, kwargs) = call("m:f([1, [2]], {'a': 1, 2: (3,)}, {1, 2,}, set(), (), [], {}, (1,), x=[],)");
    assert_eq!(
        args,
        vec![
            Literal::List(vec![Literal::Int(1), Literal::List(vec![Literal::Int(2)])]),
            Literal::Dict(vec![(s("a"), Literal::Int(1)), (Literal::Int(2), Literal::Tuple(vec![Literal::Int(3)]))]),
            Literal::Set(vec![Literal::Int(1), Literal::Int(2)]),
            Literal::Set(vec![]),
            Literal::Tuple(vec![]),
            Literal::List(vec![]),
            Literal::Dict(vec![]),
            Literal::Tuple(vec![Literal::Int(1)]),
        ]
    );
    assert_eq!(kwargs, vec![("x".into(), Literal::List(vec![]))]);
}

#[test]
fn big_ints_and_repeated_keywords() {
    let (_, args, kwargs) =
        call("m:f(99999999999999999999999999999999999999999, -170141183460469231731687303715884105728, a=1, b=2, a=3)");
    assert_eq!(
        args,
        vec![
            Literal::BigInt { negative: false, radix: 10, digits: "99999999999999999999999999999999999999999".into() },
            Literal::Int(i128::MIN),
        ]
    );
    // Gunicorn builds {kw.arg: value}: first position, last value.
    assert_eq!(kwargs, vec![("a".into(), Literal::Int(3)), ("b".into(), Literal::Int(2))]);
}

#[test]
fn gunicorn_error_messages() {
    assert_eq!(err("m: app"), "Failed to parse ' app' as an attribute name or function call.");
    assert_eq!(err("m:"), "Failed to parse '' as an attribute name or function call.");
    assert_eq!(err("m:create_app("), "Failed to parse 'create_app(' as an attribute name or function call.");
    assert_eq!(err("m:app:app"), "Failed to parse 'app:app' as an attribute name or function call.");
    assert_eq!(err("m:None"), "Failed to parse 'None' as an attribute name or function call.");
    assert_eq!(err("m:class"), "Failed to parse 'class' as an attribute name or function call.");
    assert_eq!(err("m:a[0]"), "Failed to parse 'a[0]' as an attribute name or function call.");
    assert_eq!(err("m:a\nb"), "Failed to parse 'a\\nb' as an attribute name or function call.");
    assert_eq!(err("m:app\\\n"), "Failed to parse 'app\\\\\\n' as an attribute name or function call.");
    assert_eq!(err("m:f(a=1, 2)"), "Failed to parse 'f(a=1, 2)' as an attribute name or function call.");
    assert_eq!(err("m:f(007)"), "Failed to parse 'f(007)' as an attribute name or function call.");
    assert_eq!(err("m:f('\\x4')"), "Failed to parse \"f('\\\\x4')\" as an attribute name or function call.");
    assert_eq!(err("m:f('a' b'c')"), "Failed to parse \"f('a' b'c')\" as an attribute name or function call.");
    assert_eq!(
        err("m:f(x for x in y, 1)"),
        "Failed to parse 'f(x for x in y, 1)' as an attribute name or function call."
    );
    assert_eq!(err("m:f(f'{}')"), "Failed to parse \"f(f'{}')\" as an attribute name or function call.");
    assert_eq!(err("m:obj.attr()"), "Function reference must be a simple name: 'obj.attr()'");
    assert_eq!(err("m:f()()"), "Function reference must be a simple name: 'f()()'");
    assert_eq!(err("m:create_app(x)"), "Failed to parse arguments as literal values: 'create_app(x)'");
    assert_eq!(err("m:f(*a)"), "Failed to parse arguments as literal values: 'f(*a)'");
    assert_eq!(err("m:f(**k)"), "Failed to parse arguments as literal values: 'f(**k)'");
    assert_eq!(err("m:f(-True)"), "Failed to parse arguments as literal values: 'f(-True)'");
    assert_eq!(err("m:f(--1)"), "Failed to parse arguments as literal values: 'f(--1)'");
    assert_eq!(err("m:f(1+2)"), "Failed to parse arguments as literal values: 'f(1+2)'");
    assert_eq!(err("m:f(f'x')"), "Failed to parse arguments as literal values: \"f(f'x')\"");
    assert_eq!(err("m:f(lambda: 1)"), "Failed to parse arguments as literal values: 'f(lambda: 1)'");
    assert_eq!(err("m:f(set((1,)))"), "Failed to parse arguments as literal values: 'f(set((1,)))'");
    assert_eq!(err("m:f({**a})"), "Failed to parse arguments as literal values: 'f({**a})'");
    assert_eq!(err("m:f(x for x in y)"), "Failed to parse arguments as literal values: 'f(x for x in y)'");
    assert_eq!(err("m:f(it's)"), "Failed to parse \"f(it's)\" as an attribute name or function call.");
}

#[test]
fn beyond_gunicorn_messages() {
    // Gunicorn dies with "TypeError: unhashable type: 'list'" here.
    assert_eq!(
        err("m:f({[1]: 2})"),
        "Failed to parse arguments as literal values: 'f({[1]: 2})' (unhashable type: 'list')"
    );
    assert!(err("m:f({(1, {2})})").ends_with("(unhashable type: 'set')"));
    // A non-literal earlier in evaluation order wins, as in Python.
    assert_eq!(err("m:f(x, {[1]: 2})"), "Failed to parse arguments as literal values: 'f(x, {[1]: 2})'");
    // Valid for Gunicorn, not representable here.
    assert_eq!(
        err("m:f(1+2j)"),
        "Failed to parse arguments as literal values: 'f(1+2j)' (ferrocorn cannot represent complex numbers)"
    );
    assert!(err("m:f(-3j)").contains("complex"));
    assert!(err("m:f('\\N{BULLET}')").contains("\\N{...} escapes"));
    assert!(err("m:f('\\ud800')").contains("surrogates"));
    assert!(err("m:f(**{'a': 1})").contains("'**' of a literal"));
    // ...unless Python would have failed first anyway.
    assert_eq!(err("m:f(1j, x)"), "Failed to parse arguments as literal values: 'f(1j, x)'");
    // A replaced keyword value is never evaluated.
    assert_eq!(call("m:f(a=1j, a=2)").2, vec![("a".into(), Literal::Int(2))]);
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep = format!("m:f({}1{})", "(".repeat(500), ")".repeat(500));
    assert!(err(&deep).starts_with("Failed to parse 'f((((("));
    let unary = format!("m:f({}1)", "-".repeat(5000));
    assert!(parse(&unary).is_err());
    // ferrocorn's nesting bound (CPython's is about twice as deep).
    let fine = format!("m:f({}1{})", "(".repeat(90), ")".repeat(90));
    assert_eq!(call(&fine).1, vec![Literal::Int(1)]);
}
