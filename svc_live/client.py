"""`python -m svc_live.client`: join a live session from a terminal.

Prints every event as it arrives and sends what you type:

    hello everyone          chat (students and instructor)
    /ask <text>             ask a question
    /up <question id>       upvote a question (/unup to withdraw)
    /vote <poll id> <opt>   vote (several option ids for multi-choice polls)
    /hand, /lower [user]    raise or lower a hand (the instructor may lower anyone's)
    /b <text>               broadcast (instructor)
    /poll <q> | <a> | <b>   open a poll (instructor); /close <poll id>; /answer <question id>

The access token comes from --token or $ELEARN_TOKEN (UserService/Login's access_token).
Heartbeats go every 30 s; on RECONNECT_ELSEWHERE or a dropped stream the client rejoins with
its last sequence, so nothing is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc
from google.protobuf import text_format

from elearn.live.v1 import live_service_pb2 as pb
from svc_live.participant import Participant

# A killed or draining pod, or a stream closed as too slow: rejoin with the last sequence.
_REJOIN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


def parse(line: str) -> pb.ClientEvent | None:
    """The client event a typed line stands for (None for an empty line)."""
    line = line.strip()
    if not line:
        return None
    if not line.startswith("/"):
        return pb.ClientEvent(chat=pb.SendChat(text=line))
    command, _, rest = line.partition(" ")
    rest = rest.strip()
    args = rest.split()
    match command:
        case "/ask":
            return pb.ClientEvent(question=pb.AskQuestion(text=rest))
        case "/up" | "/unup":
            upvote = pb.UpvoteQuestion(question_id=rest, withdraw=command == "/unup")
            return pb.ClientEvent(upvote=upvote)
        case "/vote" if args:
            return pb.ClientEvent(poll_vote=pb.VotePoll(poll_id=args[0], option_ids=args[1:]))
        case "/hand":
            return pb.ClientEvent(raise_hand=pb.RaiseHand(raised=True))
        case "/lower":
            return pb.ClientEvent(raise_hand=pb.RaiseHand(raised=False, user_id=rest))
        case "/b":
            return pb.ClientEvent(broadcast=pb.SendBroadcast(text=rest))
        case "/poll":
            question, *options = [p.strip() for p in rest.split("|")]
            return pb.ClientEvent(open_poll=pb.OpenPoll(question=question, options=options))
        case "/close":
            return pb.ClientEvent(close_poll=pb.ClosePoll(poll_id=rest))
        case "/answer":
            return pb.ClientEvent(answer_question=pb.AnswerQuestion(question_id=rest))
    raise ValueError(f"unknown command {command!r}; see --help")


def show(event: pb.ServerEvent) -> str:
    kind = event.WhichOneof("kind") or "?"
    body = text_format.MessageToString(getattr(event, kind), as_one_line=True)
    prefix = f"#{event.sequence}" if event.sequence else "  "
    return f"{prefix} {kind}: {body}"


async def _typed(participant: Participant) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            event = parse(line)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            continue
        if event is not None:
            participant.send(event)


async def run(address: str, token: str, session_id: str) -> None:
    last = 0
    async with grpc.aio.insecure_channel(address) as channel:
        for _ in range(100):
            participant = Participant(
                channel, token, session_id, resume_after=last, heartbeat_seconds=30.0
            )
            welcome = await participant.open()
            print(show(pb.ServerEvent(welcome=welcome)))
            typing = asyncio.create_task(_typed(participant))
            try:
                while True:
                    event = await participant.next_event(within=3600)
                    print(show(event), flush=True)
                    if event.session_state.state == pb.SESSION_STATE_ENDED:
                        return
            except StopAsyncIteration:
                print("stream ended; rejoining", file=sys.stderr)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _REJOIN:
                    raise
                print(f"{exc.code().name}: {exc.details()}; rejoining", file=sys.stderr)
                await asyncio.sleep(1.0)
            finally:
                typing.cancel()
                last = participant.last_sequence
                await participant.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("session_id")
    parser.add_argument("--address", default=os.environ.get("ELEARN_EDGE", "127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("ELEARN_TOKEN", ""))
    args = parser.parse_args()
    if not args.token:
        parser.error("an access token is needed: --token or $ELEARN_TOKEN")
    try:
        asyncio.run(run(args.address, args.token, args.session_id))
    except grpc.aio.AioRpcError as exc:
        raise SystemExit(f"{exc.code().name}: {exc.details()}") from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
