"""`cds review ...`: the pharmacists' decisions store (import, decide, history, letters, FHIR
export), its accounts and the served worklist."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cds.cli.common import (
    STDIN,
    AsOfOpt,
    AuthorOpt,
    DbOpt,
    Format,
    PacksOpt,
    as_of_date,
    author_of,
    emit,
    err,
    fail,
    file_errors,
    input_name,
    json_bytes,
    load_engine_or_fail,
    open_store,
    out,
)
from cds.errors import CdsError

review_app = typer.Typer(no_args_is_help=True, help=(
    "Pharmacists' decisions on alerts: import a filled-in worklist, decide, history, letters "
    "to prescribers, FHIR export (docs/review.md)."))
user_app = typer.Typer(no_args_is_help=True, help="Accounts of the served worklist.")


@review_app.command("import")
@file_errors
def review_import(
    file: Annotated[Path, typer.Argument(
        help="A worklist.csv or alerts.csv with decisions filled in; '-' reads standard input.")],
    db: DbOpt = None,
    author: AuthorOpt = None,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Apply the good rows; write the rejects to --rejects.")] = False,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", help="Where --partial writes the rejected rows (default FILE.rejects.csv; "
                          "needed when FILE is '-').")] = None,
    pack: PacksOpt = None,
) -> None:
    """Apply the decisions of a filled-in worklist or alerts CSV: every row checked first;
    one bad row applies nothing (unless --partial)."""
    import io

    from cds.decisions.csv_import import import_csv, write_rejects
    from cds.decisions.reasons import responses_of

    stdin = str(file) == STDIN
    if stdin and partial and rejects is None:
        fail("--partial with FILE '-' (standard input) needs --rejects FILE")
    name = input_name(file)
    source = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="") if stdin else None
    with open_store(db) as store:
        try:
            res = import_csv(store, Path(name), author=author_of(author), partial=partial,
                             responses=responses_of(load_engine_or_fail(pack, None).packs),
                             source=source)
        except CdsError as e:
            fail(str(e))
    for r in res.rejects[:50]:
        err.print(f"[red]rejected[/] {name}: {r}", soft_wrap=True)
    if len(res.rejects) > 50:
        err.print(f"... and {len(res.rejects) - 50} more")
    if res.rejects and not partial:
        fail(f"{len(res.rejects)} row(s) rejected: nothing applied (fix them, or use --partial)")
    if res.rejects:
        path = rejects or file.with_suffix(".rejects.csv")
        write_rejects(path, res.rejects)
        err.print(f"{len(res.rejects)} rejected row(s) written to {path}")
    out.print(f"applied {len(res.applied)} decision(s); {res.unchanged} row(s) unchanged")
    if res.rejects:
        raise typer.Exit(1)


@review_app.command("decide")
@file_errors
def review_decide(
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    alert_key: Annotated[str, typer.Argument(help="The alert's key (alert_key column).")],
    state: Annotated[str, typer.Option("--state", help="open, accepted, acted, overridden, "
                                                       "snoozed, referred or resolved.")],
    reason: Annotated[str | None, typer.Option("--reason", help="A reason code the alert offers.")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    follow_up: Annotated[str | None, typer.Option(
        "--follow-up", help="YYYY-MM-DD; for a snooze, the day it ends.")] = None,
    referred_to: Annotated[str | None, typer.Option("--referred-to")] = None,
    expect_version: Annotated[int | None, typer.Option(
        "--expect-version", help="The decision version you read (0: none): a decision taken "
                                 "since is a conflict (exit 3), not overwritten.")] = None,
    db: DbOpt = None,
    author: AuthorOpt = None,
    pack: PacksOpt = None,
) -> None:
    """Record one decision (for scripts); the same checks as an import."""
    from cds.decisions.csv_import import import_row
    from cds.decisions.reasons import responses_of
    from cds.decisions.store import DecisionConflict

    row = {"patient_id": patient, "alert_key": alert_key, "decision": state,
           "reason": reason or "", "note": note or "", "follow_up": follow_up or "",
           "referred_to": referred_to or "",
           "decision_version": "" if expect_version is None else str(expect_version)}
    with open_store(db) as store:
        try:
            d = import_row(store, row, author=author_of(author),
                           responses=responses_of(load_engine_or_fail(pack, None).packs),
                           check_version=expect_version is not None)
        except DecisionConflict as e:
            fail(str(e), 3)
        except CdsError as e:
            fail(str(e))
    out.print(f"{d.patient_id} {d.alert_key}: {d.state} (version {d.version}) by {d.author}")


@review_app.command("history")
@file_errors
def review_history(
    patient: Annotated[str | None, typer.Argument(help="Patient id (default: everyone).")] = None,
    alert_key: Annotated[str | None, typer.Option("--key", help="One alert only.")] = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    db: DbOpt = None,
) -> None:
    """Who decided what and when: the append-only history, oldest first."""
    from dataclasses import asdict

    from rich.table import Table

    with open_store(db) as store:
        rows = store.history(patient, alert_key)
    if format is Format.json:
        emit(json_bytes([asdict(d) for d in rows]))
        return
    t = Table()
    for col in ("when (UTC)", "patient", "alert", "v", "state", "reason", "by", "note"):
        t.add_column(col, overflow="fold")
    for d in rows:
        t.add_row(f"{d.decided_at:%Y-%m-%d %H:%M}", d.patient_id, d.alert_key, str(d.version),
                  d.state + (f" until {d.snooze_until}" if d.snooze_until else ""),
                  d.reason_code or "", d.author, d.note or "")
    out.print(t)
    if not rows:
        out.print("no decisions")


@review_app.command("letters")
@file_errors
def review_letters(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for one HTML letter per prescriber.")],
    db: DbOpt = None,
    pharmacy: Annotated[str | None, typer.Option("--pharmacy", help="Who the letters are from.")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """One letter per prescriber with the accepted recommendations and referrals, in plain
    language (print to PDF from a browser)."""
    from cds.decisions.letters import write_letters
    from cds.decisions.share import letter_items

    with open_store(db) as store:
        items = letter_items(store)
    paths = write_letters(items, out_dir, pharmacy=pharmacy, as_of=as_of_date(as_of))
    out.print(f"wrote {len(paths) - 1} letter(s) and an index to {out_dir}")


@review_app.command("export")
@file_errors
def review_export(
    fhir: Annotated[Path, typer.Option("--fhir", help="Folder for DetectedIssue.ndjson and Task.ndjson.")],
    db: DbOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Every patient's alerts (as of their latest review) as FHIR R4 DetectedIssue resources
    with the decisions as mitigations, and each referral as a Task (Bulk Data NDJSON)."""
    from cds.decisions.share import export_fhir

    with open_store(db) as store:
        n_issues, n_tasks = export_fhir(store, fhir, as_of=as_of_date(as_of))
    out.print(f"wrote {n_issues} DetectedIssue and {n_tasks} Task resources to {fhir}")


review_app.add_typer(user_app, name="user")


@user_app.command("add")
@file_errors
def review_user_add(
    name: Annotated[str, typer.Argument(help="Login name: a-z, 0-9, . _ - (2-64).")],
    role: Annotated[str, typer.Option("--role", help="pharmacist, prescriber or admin.")],
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    prescriber_name: Annotated[str | None, typer.Option(
        "--prescriber-name", help="For a prescriber: the name their orders carry (their patients).")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (else: asked).")] = False,
    db: DbOpt = None,
) -> None:
    """Add an account (its password hashed with argon2id)."""
    from cds.worklist.auth import AccountError, Accounts

    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else typer.prompt("Password (12+ characters)", hide_input=True,
                                  confirmation_prompt=True))
    with open_store(db) as store:
        try:
            Accounts(store).add_user(name, role, password, display_name=display_name,
                                     prescriber_name=prescriber_name, by="cli")
        except AccountError as e:
            fail(str(e))
    out.print(f"added {name} ({role})")


@user_app.command("unlock")
@file_errors
def review_user_unlock(
    name: Annotated[str, typer.Argument(help="The login name whose failed logins to forget.")],
    db: DbOpt = None,
) -> None:
    """Let a user name whose logins are refused after too many failed attempts try again now
    (the refusal otherwise ends by itself 15 minutes after the failures)."""
    from cds.worklist.auth import AccountError, Accounts

    with open_store(db) as store:
        try:
            Accounts(store).unlock(name, by="cli")
        except AccountError as e:
            fail(str(e))
    out.print(f"unlocked {name}")


@review_app.command("serve")
@file_errors
def review_serve(
    panel: Annotated[Path, typer.Option("--panel", help="The output folder of `cds panel` to serve.")],
    db: DbOpt = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8090,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    behind_proxy: Annotated[bool, typer.Option(
        "--behind-proxy", help="TLS is terminated by a reverse proxy in front (cookies Secure).")] = False,
    oidc_issuer: Annotated[str | None, typer.Option(
        "--oidc-issuer", help="OpenID Connect issuer URL.")] = None,
    oidc_client_id: Annotated[str | None, typer.Option("--oidc-client-id")] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="The URL users open (for the OpenID Connect callback).")] = None,
    pharmacy: Annotated[str | None, typer.Option("--pharmacy", help="Who the letters are from.")] = None,
    pack: PacksOpt = None,
) -> None:
    """Serve the pharmacists' worklist in the browser: the queue, patient pages with the
    decision forms, letters, the program dashboard (docs/review.md). Refuses a non-loopback
    address without TLS or --behind-proxy. The OpenID Connect client secret is read from
    CDS_OIDC_CLIENT_SECRET."""
    import os

    import uvicorn

    from cds.decisions.store import default_db
    from cds.worklist.app import WorklistSettings, create_app
    from cds.worklist.auth import OidcSettings
    from cds.worklist.security import check_bind

    tls = tls_cert is not None and tls_key is not None
    try:
        check_bind(host, tls, behind_proxy)
    except CdsError as e:
        fail(str(e))
    url = db or default_db(panel) or str(panel / "decisions.sqlite3")
    oidc = None
    if oidc_issuer:
        if not (oidc_client_id and os.environ.get("CDS_OIDC_CLIENT_SECRET")):
            fail("--oidc-issuer needs --oidc-client-id and CDS_OIDC_CLIENT_SECRET")
        base = public_url or f"{'https' if tls or behind_proxy else 'http'}://{host}:{port}"
        oidc = OidcSettings(oidc_issuer, oidc_client_id, os.environ["CDS_OIDC_CLIENT_SECRET"],
                            base.rstrip("/") + "/login/oidc/callback")
    try:
        app = create_app(WorklistSettings(db=url, panel=panel, secure_cookies=tls or behind_proxy,
                                          oidc=oidc, packs=pack, pharmacy=pharmacy))
    except CdsError as e:
        fail(str(e))
    out.print(f"worklist at {'https' if tls else 'http'}://{host}:{port}/ (log in with an "
              "account made by `cds review user add`)")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning",
                ssl_certfile=str(tls_cert) if tls else None, ssl_keyfile=str(tls_key) if tls else None,
                proxy_headers=behind_proxy, forwarded_allow_ips="*" if behind_proxy else None)
