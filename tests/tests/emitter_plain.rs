//! The emitter in a plain process, outside any cluster: events reach the process itself.
//! One test function, because the listeners are process-wide.

use std::sync::{Arc, Mutex};

use cluster2::emitter::{self, Target};

#[test]
fn a_plain_process_emits_to_itself() {
    let got = Arc::new(Mutex::new(Vec::<String>::new()));

    // on + emit: delivered, decoded into the listener's own type.
    let g = got.clone();
    let id = emitter::on("price-changed", move |ev| {
        let (sku, cents): (String, u64) = ev.args()?;
        assert_eq!(ev.from(), std::process::id());
        g.lock().unwrap().push(format!("{sku}={cents}"));
        Ok(())
    });
    emitter::emit("price-changed", ("sku-1", 999)).unwrap();
    emitter::to([Target::Myself])
        .emit("price-changed", ("sku-2", 5))
        .unwrap();
    emitter::emit_to(
        &[Target::Pid(std::process::id())],
        "price-changed",
        ("sku-3", 1),
    )
    .unwrap();
    // Master, in a plain process, is the process itself; duplicates deliver once.
    emitter::emit_to(
        &[Target::Master, Target::Myself],
        "price-changed",
        ("sku-4", 2),
    )
    .unwrap();
    assert_eq!(
        *got.lock().unwrap(),
        ["sku-1=999", "sku-2=5", "sku-3=1", "sku-4=2"]
    );

    // remove_listener: no more deliveries; removing twice says so.
    assert!(emitter::remove_listener("price-changed", id));
    assert!(!emitter::remove_listener("price-changed", id));
    emitter::emit("price-changed", ("sku-5", 1)).unwrap();
    assert_eq!(got.lock().unwrap().len(), 4);

    // once: only the first event.
    let g = got.clone();
    emitter::once("reload", move |_| {
        g.lock().unwrap().push("reload".to_owned());
        Ok(())
    });
    emitter::emit("reload", ()).unwrap();
    emitter::emit("reload", ()).unwrap();
    assert_eq!(
        got.lock()
            .unwrap()
            .iter()
            .filter(|s| *s == "reload")
            .count(),
        1
    );

    // remove_all_listeners.
    for _ in 0..3 {
        let g = got.clone();
        emitter::on("many", move |_| {
            g.lock().unwrap().push("many".to_owned());
            Ok(())
        });
    }
    emitter::remove_all_listeners("many");
    emitter::emit("many", ()).unwrap();
    assert!(!got.lock().unwrap().iter().any(|s| s == "many"));

    // A listener decoding into the wrong type gets an error, and the next listener still runs.
    let decoded = Arc::new(Mutex::new(Vec::new()));
    let d = decoded.clone();
    emitter::on("typed", move |ev| {
        let result = ev.args::<u64>();
        d.lock().unwrap().push(result.map_err(|e| e.to_string()));
        Ok(())
    });
    let d = decoded.clone();
    emitter::on("typed", move |ev| {
        d.lock().unwrap().push(
            ev.args::<(String, u64)>()
                .map(|_| 1)
                .map_err(|e| e.to_string()),
        );
        Err("this listener fails; the emitter logs it".into())
    });
    emitter::emit("typed", ("not a number", 1)).unwrap();
    let decoded = decoded.lock().unwrap();
    assert_eq!(decoded.len(), 2);
    let err = decoded[0].as_ref().unwrap_err();
    assert!(
        err.contains("event `typed` does not decode into u64"),
        "{err}"
    );
    assert_eq!(decoded[1], Ok(1));

    // Listeners may emit from inside a listener.
    let g = got.clone();
    emitter::on("outer", |_| {
        emitter::emit("inner", ())?;
        Ok(())
    });
    emitter::on("inner", move |_| {
        g.lock().unwrap().push("inner".to_owned());
        Ok(())
    });
    emitter::emit("outer", ()).unwrap();
    assert!(got.lock().unwrap().iter().any(|s| s == "inner"));
}
