use super::*;

#[test]
fn round_trips() {
    let advert = Advert {
        origin: NodeId(1),
        seq: 99,
        stub: true,
        truncated: true,
        no_transit: true,
        links: (0..3)
            .map(|i| LinkEntry {
                neighbor: NodeId(10 + i),
                rtt_us: 120 * i as u32,
                loss_permille: i as u16,
                settling: i == 1,
            })
            .collect(),
        signature: [5; 64],
    };
    for m in [
        Control::Probe { seq: 7 },
        Control::ProbeReply { seq: u32::MAX },
        Control::SyncRequest,
        Control::LinkState(advert),
        Control::CertRequest { node: NodeId(42) },
        Control::MtuProbe { seq: 3, len: 1400 },
        Control::MtuProbe { seq: 4, len: 8 },
        Control::MtuProbeReply { seq: 3 },
        Control::Observed {
            addr: "198.18.0.7:51820".parse().unwrap(),
        },
        Control::Observed {
            addr: "[fd00::7]:9".parse().unwrap(),
        },
        Control::Punch {
            reply: true,
            varies: false,
            candidates: vec![
                "198.19.1.2:51820".parse().unwrap(),
                "198.18.0.3:40000".parse().unwrap(),
                "[fd00::1]:51820".parse().unwrap(),
            ],
        },
        Control::Punch {
            reply: false,
            varies: true,
            candidates: Vec::new(),
        },
        Control::Cert {
            bytes: vec![2; 300],
        },
        Control::Lookup(Lookup::Address("100.64.0.9".parse().unwrap())),
        Control::Lookup(Lookup::Address("fd00::9".parse().unwrap())),
        Control::Lookup(Lookup::Name("beta".into())),
        Control::Lookup(Lookup::Name("n".repeat(63))),
        Control::LinkStateAck(Ack::default()),
        Control::Accusation(Accusation {
            accuser: NodeId(1),
            accused: NodeId(2),
            seq: 1 << 60,
            since_unix: 1_800_000_000,
            expires_unix: 1_800_000_060,
            withdrawn: false,
            scenario: "scan".into(),
            cert: vec![3; 250],
            signature: [9; 64],
        }),
        Control::Accusation(Accusation {
            accuser: NodeId(1),
            accused: NodeId(2),
            seq: 2,
            since_unix: 0,
            expires_unix: 0,
            withdrawn: true,
            scenario: "bad-control".into(),
            cert: Vec::new(),
            signature: [0; 64],
        }),
        Control::LinkStateAck(Ack {
            sync: true,
            entries: (0..MAX_ACK_ENTRIES as u64)
                .map(|i| (NodeId(i * 3), i << 40))
                .collect(),
        }),
        Control::LinkStateSummary(Summary::default()),
        Control::LinkStateSummary(Summary {
            entries: (0..MAX_ACK_ENTRIES as u64)
                .map(|i| (NodeId(i * 5), i << 30))
                .collect(),
        }),
        Control::BundleOffer {
            kind: 1,
            version: 9,
            len: 3000,
        },
        Control::BundleRequest {
            kind: 2,
            version: 9,
            offset: 1024,
        },
        Control::BundleChunk {
            kind: 1,
            version: 9,
            offset: 2048,
            total: 3000,
            data: vec![7; 952],
        },
    ] {
        let bytes = m.encode();
        assert!(is_control(&bytes));
        assert_eq!(Control::decode(&bytes), Ok(m));
    }
}

#[test]
fn rejects_bad_input() {
    assert_eq!(Control::decode(&[]), Err(ControlError::BadLength));
    assert_eq!(
        Control::decode(&[18, 0, 0, 0]),
        Err(ControlError::UnknownKind(18))
    );
    // Accusations: lengths must add up, the scenario is a name,
    // reserved bits and bytes are zero.
    let acc = Control::Accusation(Accusation {
        accuser: NodeId(1),
        accused: NodeId(2),
        seq: 3,
        since_unix: 4,
        expires_unix: 5,
        withdrawn: false,
        scenario: "scan".into(),
        cert: vec![1; 10],
        signature: [2; 64],
    })
    .encode();
    assert_eq!(acc.len(), 48 + 4 + 10 + 64);
    assert_eq!(
        Control::decode(&acc[..acc.len() - 1]),
        Err(ControlError::BadLength)
    );
    for (at, value, error) in [
        (1, 2, ControlError::ReservedNonZero),  // a reserved flag bit
        (3, 1, ControlError::ReservedNonZero),  // the reserved byte
        (47, 1, ControlError::ReservedNonZero), // reserved after the cert length
        (48, b' ', ControlError::ReservedNonZero), // not a name
        (2, 0, ControlError::BadLength),        // no scenario
        (2, 33, ControlError::BadLength),       // too long a scenario
        (44, 11, ControlError::BadLength),      // cert length off by one
    ] {
        let mut b = acc.clone();
        b[at] = value;
        assert_eq!(Control::decode(&b), Err(error), "byte {at} = {value}");
    }
    // Acknowledgements: the count must match the length, at most 64
    // entries, only the sync flag.
    let ack = Control::LinkStateAck(Ack {
        sync: false,
        entries: vec![(NodeId(1), 2)],
    })
    .encode();
    assert_eq!(ack.len(), 20);
    assert_eq!(Control::decode(&ack[..19]), Err(ControlError::BadLength));
    assert_eq!(Control::decode(&ack[..3]), Err(ControlError::BadLength));
    assert_eq!(
        Control::decode(&[15, 2, 0, 0]),
        Err(ControlError::ReservedNonZero)
    );
    let mut many = vec![15, 0, 65, 0];
    many.resize(4 + 65 * 16, 0);
    assert_eq!(Control::decode(&many), Err(ControlError::TooManyEntries));
    // Summaries: the acknowledgement's layout, no flag at all.
    let summary = Control::LinkStateSummary(Summary {
        entries: vec![(NodeId(1), 2)],
    })
    .encode();
    assert_eq!(summary[..4], [17, 0, 1, 0]);
    assert_eq!(
        Control::decode(&summary[..19]),
        Err(ControlError::BadLength)
    );
    assert_eq!(
        Control::decode(&[17, 1, 0, 0]),
        Err(ControlError::ReservedNonZero)
    );
    many[0] = 17;
    assert_eq!(Control::decode(&many), Err(ControlError::TooManyEntries));
    // Lookups: the length byte must match, names 1–63 bytes of UTF-8,
    // addresses 16 bytes, the reserved byte and unknown kinds refused.
    let name = Control::Lookup(Lookup::Name("beta".into())).encode();
    assert_eq!(name, [14, 2, 4, 0, b'b', b'e', b't', b'a']);
    assert_eq!(Control::decode(&name[..7]), Err(ControlError::BadLength));
    assert_eq!(
        Control::decode(&[14, 2, 0, 0]),
        Err(ControlError::BadLength)
    );
    assert_eq!(
        Control::decode(&[14, 2, 1, 0, 0xff]),
        Err(ControlError::BadLength)
    );
    assert_eq!(
        Control::decode(&[14, 1, 4, 0, 1, 2, 3, 4]),
        Err(ControlError::BadLength)
    );
    assert_eq!(
        Control::decode(&[14, 3, 1, 0, 1]),
        Err(ControlError::ReservedNonZero)
    );
    assert_eq!(
        Control::decode(&[14, 2, 1, 1, b'a']),
        Err(ControlError::ReservedNonZero)
    );
    assert_eq!(Control::decode(&[14, 2]), Err(ControlError::BadLength));
    let mut long = vec![14, 2, 64, 0];
    long.extend_from_slice(&[b'a'; 64]);
    assert_eq!(Control::decode(&long), Err(ControlError::BadLength));
    let punch = Control::Punch {
        reply: false,
        varies: false,
        candidates: vec!["198.18.0.1:1".parse().unwrap()],
    }
    .encode();
    assert_eq!(punch.len(), PUNCH_LEN);
    for (at, value, error) in [
        (1, 4, ControlError::ReservedNonZero), // a reserved flag bit
        (3, 1, ControlError::ReservedNonZero), // the reserved byte
        (4 + 18, 1, ControlError::ReservedNonZero), // padding
        (2, 9, ControlError::TooManyEntries),
    ] {
        let mut b = punch.clone();
        b[at] = value;
        assert_eq!(Control::decode(&b), Err(error), "byte {at} = {value}");
    }
    assert_eq!(
        Control::decode(&punch[..PUNCH_LEN - 1]),
        Err(ControlError::BadLength)
    );
    let mut observed = Control::Observed {
        addr: "198.18.0.1:1".parse().unwrap(),
    }
    .encode();
    assert_eq!(observed.len(), 20);
    observed[1] = 1;
    assert_eq!(
        Control::decode(&observed),
        Err(ControlError::ReservedNonZero)
    );
    assert_eq!(
        Control::decode(&observed[..19]),
        Err(ControlError::BadLength)
    );
    assert_eq!(
        Control::decode(&[1, 0, 0, 0, 1]),
        Err(ControlError::BadLength)
    );
    assert_eq!(
        Control::decode(&[1, 1, 0, 0, 1, 0, 0, 0]),
        Err(ControlError::ReservedNonZero)
    );
    let mut a = Control::LinkState(Advert {
        origin: NodeId(1),
        seq: 1,
        stub: false,
        truncated: false,
        no_transit: false,
        links: vec![LinkEntry {
            neighbor: NodeId(2),
            rtt_us: 1,
            loss_permille: 0,
            settling: false,
        }],
        signature: [0; 64],
    })
    .encode();
    let mut probe = Control::MtuProbe { seq: 1, len: 100 }.encode();
    probe[99] = 1; // padding must be zero
    assert_eq!(Control::decode(&probe), Err(ControlError::ReservedNonZero));
    assert_eq!(
        Control::decode(&vec![KIND_MTU_PROBE; MAX_MTU_PROBE + 1]),
        Err(ControlError::BadLength)
    );
    a[1] = 0x08; // a reserved advert flag bit
    assert_eq!(Control::decode(&a), Err(ControlError::ReservedNonZero));
    a[1] = 0;
    a[20 + 15] = 0x80; // a reserved flag bit
    assert_eq!(Control::decode(&a), Err(ControlError::ReservedNonZero));
    a[20 + 15] = 0;
    a[2] = 2; // claims two entries, carries one
    assert_eq!(Control::decode(&a), Err(ControlError::BadLength));
    a[2] = 65;
    assert_eq!(Control::decode(&a), Err(ControlError::TooManyEntries));
    assert!(!is_control(&[0x45]) && !is_control(&[0x60]) && is_control(&[1]));
    let chunk = |offset: u32, total: u32, n: usize| {
        Control::BundleChunk {
            kind: 1,
            version: 1,
            offset,
            total,
            data: vec![0; n],
        }
        .encode()
    };
    assert_eq!(
        Control::decode(&chunk(10, 10, 1)),
        Err(ControlError::BadBundle)
    );
    assert_eq!(
        Control::decode(&chunk(0, 5000, 1025)),
        Err(ControlError::BadBundle)
    );
    assert_eq!(
        Control::decode(&chunk(0, 5000, 0)),
        Err(ControlError::BadBundle)
    );
    let mut offer = Control::BundleOffer {
        kind: 1,
        version: 1,
        len: 1,
    }
    .encode();
    offer[1] = 3;
    assert_eq!(Control::decode(&offer), Err(ControlError::BadBundle));
    offer.push(0);
    assert_eq!(Control::decode(&offer), Err(ControlError::BadLength));
}
