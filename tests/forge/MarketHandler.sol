// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestBase} from "./Vm.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {ReentrantPayee} from "../../contracts/test/ReentrantPayee.sol";
import {RevertingPayee} from "../../contracts/test/RevertingPayee.sol";
import {ForceFeeder} from "../../contracts/test/ForceFeeder.sol";

/// @notice The forge invariant campaign's only target: random actors make random (mostly well-formed) calls
///         to the market and random time jumps happen. Every call that succeeds is checked on the spot against
///         the protocol's transition table (who may move a task from which state to which, and when) and the
///         money it moved is booked in a ghost ledger (who is owed what, by rule). Calls the rules say must
///         succeed (expire after a deadline, a due withdraw, ...) are required to succeed. The invariants
///         (TaskMarketInvariants) compare the market with that ledger after every call.
/// @dev Handler functions never revert on expected market reverts (they catch them); a revert here is a finding.
contract MarketHandler is TestBase {
    using Statuses for ITaskMarket.Status;

    enum Op {
        Post,
        AssignProvider,
        AssignValidator,
        SubmitResult,
        Verdict,
        Finalize,
        Cancel,
        Expire
    }

    TaskMarket public immutable market;
    ReentrantPayee public immutable reentrant;
    RevertingPayee public immutable reverting;
    /// @notice Where the reverting payee's credit goes (withdrawTo).
    address public constant SINK = address(0x51A4);
    uint256 public constant MAX_WARP = 400;

    address[] internal _actors;

    // ------------------------------------------------------------ ghost ledger
    mapping(address account => uint256) public ghostCredit;
    /// @notice Escrow the open tasks should hold, by rule.
    uint256 public ghostEscrow;
    /// @notice Ether pushed in by selfdestruct (owned by nobody, must never be paid out as credit).
    uint256 public ghostForced;
    /// @notice Wei each account actually received from withdraw/withdrawTo.
    mapping(address account => uint256) public received;
    /// @notice Every wei ever credited to each account, by rule (its rightful total).
    mapping(address account => uint256) public entitled;
    mapping(uint256 taskId => uint256) public paidOut;
    mapping(uint256 taskId => uint8) public providerPayouts;
    mapping(uint256 taskId => uint8) public validatorPayouts;
    mapping(uint256 taskId => uint8) public requesterRefunds;
    mapping(uint256 taskId => bytes32) public resultOf;
    uint256[] internal _committedTasks;
    uint256 public openCount;
    uint256 public maxDeadline;

    // ------------------------------------------------------------ call statistics (for the report)
    mapping(uint8 op => uint256) public successes;
    uint256 public expectedReverts;
    /// @notice Successful commits of a hash already committed on another task (bound to their own task only).
    uint256 public copierReplays;

    constructor(TaskMarket market_, ReentrantPayee reentrant_, RevertingPayee reverting_) {
        market = market_;
        reentrant = reentrant_;
        reverting = reverting_;
        for (uint160 i = 1; i <= 6; i++) {
            _actors.push(address(0xA000 + i));
        }
        _actors.push(address(reentrant_));
        _actors.push(address(reverting_));
        for (uint256 i = 0; i < _actors.length; i++) {
            vm.prank(_actors[i]);
            market.register(keccak256(abi.encode("key", i)), uint96(i * 1e15), true);
        }
        // the reentrant payee tries to withdraw again from inside every payment it gets
        reentrant_.setAttack(abi.encodeCall(TaskMarket.withdraw, ()));
    }

    // ================================================================== views used by the invariants

    /// @notice All actors (6 EOAs, the reentrant payee, the reverting payee).
    function actors() external view returns (address[] memory) {
        return _actors;
    }

    // ================================================================== fuzzed actions

    /// @notice A requester posts a task, naming a provider and/or a validator now or later.
    function post(uint256 who, uint256 prov, uint256 val, uint96 price, uint96 fee, uint24 timeout) external {
        // Mostly well-formed (so lifecycles get far), about one in ten ill-formed on purpose.
        address requester = _actor(who);
        uint256 n = _actors.length;
        address provider = prov % 3 == 0 ? address(0) : _actors[(who % n + 1 + (prov / 3) % (n - 1)) % n];
        address validator = val % 3 == 0 ? address(0) : _actors[(who % n + 1 + (val / 3) % (n - 1)) % n];
        if (prov % 10 == 1) provider = requester; // refused: InvalidProvider
        // at least any asking price (<= 0.02 ether), except sometimes below it
        price = uint96(price % 10 == 0 ? _bound(price, 0, 0.02 ether) : _bound(price, 0.02 ether, 2 ether));
        fee = uint96(_bound(fee, 0, 0.5 ether));
        timeout = uint24(timeout % 10 == 0 ? _bound(timeout, 0, 400) : _bound(timeout, 10, 300));
        uint256 deposit = uint256(price) + fee;
        vm.deal(requester, requester.balance + deposit);
        uint256 id = market.lastTaskId() + 1;
        ITaskMarket.Task memory b = market.getTask(id);
        vm.prank(requester);
        ITaskMarket.Terms memory terms = ITaskMarket.Terms({
            provider: provider, validator: validator, price: price, validatorFee: fee, timeout: timeout
        });
        try market.post{value: deposit}(keccak256(abi.encode(id)), terms, "", "") returns (uint256 got) {
            assertEq(got, id, "post: task ids are sequential");
            _settle(id, b, requester, Op.Post);
        } catch {
            expectedReverts++;
        }
    }

    /// @notice The requester (or someone else) names the provider of a task.
    function assignProvider(uint256 task, uint256 who, uint256 prov) external {
        uint256 id = _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        vm.prank(caller);
        try market.assignProvider(id, _actor(prov), "") {
            _settle(id, b, caller, Op.AssignProvider);
        } catch {
            expectedReverts++;
        }
    }

    /// @notice The requester (or someone else) names or replaces the validator of a task.
    function assignValidator(uint256 task, uint256 who, uint256 val) external {
        uint256 id = _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        vm.prank(caller);
        // mostly the committed result, sometimes a wrong one (must be refused)
        bytes32 h = val % 5 == 0 ? keccak256(abi.encode("wrong", id)) : resultOf[id];
        try market.assignValidator(id, _actor(val / 5), h, "") {
            assertTrue(h == resultOf[id] && h != 0, "assignValidator: named for another commitment");
            _settle(id, b, caller, Op.AssignValidator);
        } catch {
            expectedReverts++;
        }
    }

    /// @notice The provider (or someone else) commits a fresh result, or a copier replays another task's one.
    function submitResult(uint256 task, uint256 who, uint256 seed, bool copy) external {
        uint256 id = _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.provider;
        bool replay = copy && seed % 4 == 0 && _committedTasks.length != 0; // a copier, one time in eight
        uint256 source = replay ? _committedTasks[seed % _committedTasks.length] : 0;
        bytes32 h = replay ? resultOf[source] : keccak256(abi.encode("result", id, seed));
        // the commitment is per task: a hash committed on another task neither blocks nor binds this one
        bool mustWork = caller == b.provider && b.status == ITaskMarket.Status.Executing
            && block.timestamp <= b.deadline && resultOf[id] == 0;
        vm.prank(caller);
        try market.submitResult(id, h, "", "") {
            assertTrue(market.resultOf(id) == h, "submitResult: the commitment was not recorded");
            if (replay) {
                copierReplays++;
                assertTrue(market.resultOf(source) == h, "submitResult: a replay moved the source task's commitment");
            }
            resultOf[id] = h;
            _committedTasks.push(id);
            _settle(id, b, caller, Op.SubmitResult);
        } catch {
            assertTrue(!mustWork, "submitResult: the provider's result was refused");
            expectedReverts++;
        }
    }

    /// @notice The validator (or someone else) judges the committed result (or a wrong one).
    function submitVerdict(uint256 task, uint256 who, bool accept, bool wrongHash) external {
        uint256 id = _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.validator;
        wrongHash = wrongHash && who % 4 == 1; // one time in eight
        bytes32 h = wrongHash ? keccak256(abi.encode("wrong", id)) : resultOf[id];
        bool mustWork = caller == b.validator && b.status == ITaskMarket.Status.Validating
            && block.timestamp <= b.deadline && !wrongHash;
        vm.prank(caller);
        try market.submitVerdict(id, h, accept) {
            assertTrue(h == resultOf[id] && h != 0, "submitVerdict: a verdict on another commitment was taken");
            _settle(id, b, caller, Op.Verdict);
        } catch {
            assertTrue(!mustWork, "submitVerdict: the validator's due verdict was refused");
            expectedReverts++;
        }
    }

    /// @notice The requester (or someone else) finalizes and rates.
    function finalize(uint256 task, uint256 who, uint8 rating) external {
        uint256 id = _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        rating = uint8(rating % 10 == 0 ? _bound(rating, 0, 6) : _bound(rating, 1, 5)); // sometimes invalid
        bool mustWork = caller == b.requester && rating >= 1 && rating <= 5
            && (b.status == ITaskMarket.Status.Accepted || b.status == ITaskMarket.Status.Rejected);
        vm.prank(caller);
        try market.finalize(id, rating) {
            _settle(id, b, caller, Op.Finalize);
        } catch {
            assertTrue(!mustWork, "finalize: the requester's due finalize was refused");
            expectedReverts++;
        }
    }

    /// @notice The requester (or someone else) cancels.
    function cancel(uint256 task, uint256 who) external {
        uint256 id = _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        bool mustWork = caller == b.requester && b.status == ITaskMarket.Status.Pending;
        vm.prank(caller);
        try market.cancel(id) {
            _settle(id, b, caller, Op.Cancel);
        } catch {
            assertTrue(!mustWork, "cancel: the requester's cancel of a pending task was refused");
            expectedReverts++;
        }
    }

    /// @notice Anyone expires a task (permissionless): must work whenever the task's deadline has passed.
    function expire(uint256 task, uint256 who) external {
        uint256 id = _task(task);
        if (id == 0) return;
        _expire(id, who % 2 == 0 ? address(uint160(0xBEEF0000 + who % 1000)) : _actor(who));
    }

    /// @notice An outsider expires one given task (also used by the end-of-run sweep, so it is booked too).
    function expireTask(uint256 id) external {
        if (id == 0 || id > market.lastTaskId()) return;
        _expire(id, address(0xDEAD01));
    }

    function _expire(uint256 id, address caller) internal {
        ITaskMarket.Task memory b = market.getTask(id);
        bool mustWork = b.status.holdsEscrow() && block.timestamp > b.deadline;
        vm.prank(caller);
        try market.expire(id) {
            _settle(id, b, caller, Op.Expire);
        } catch {
            assertTrue(!mustWork, "expire: a task past its deadline could not be expired");
            expectedReverts++;
        }
    }

    /// @notice An actor withdraws its credit (the reverting payee sometimes to the sink instead).
    function withdraw(uint256 who, bool toSink) external {
        address account = _actor(who);
        uint256 credit = market.creditOf(account);
        bool viaSink = toSink || (account == address(reverting) && who % 2 == 0);
        address payee = viaSink ? SINK : account;
        bool mustWork = credit != 0 && payee != address(reverting);
        uint256 before = payee.balance;
        uint256 attempts = reentrant.attempts();
        vm.prank(account);
        (bool ok, bytes memory ret) = viaSink
            ? address(market).call(abi.encodeCall(TaskMarket.withdrawTo, (payable(SINK))))
            : address(market).call(abi.encodeCall(TaskMarket.withdraw, ()));
        if (ok) {
            uint256 amount = abi.decode(ret, (uint256));
            assertEq(amount, credit, "withdraw: paid amount != credit");
            assertEq(payee.balance - before, credit, "withdraw: payee balance delta != credit");
            assertEq(market.creditOf(account), 0, "withdraw: credit not cleared");
            ghostCredit[account] -= credit;
            received[account] += credit;
            if (payee == address(reentrant)) {
                assertEq(reentrant.attempts(), attempts + 1, "withdraw: the reentrant payee did not try to re-enter");
            }
        } else {
            assertTrue(!mustWork, "withdraw: a due withdraw was refused");
            assertEq(market.creditOf(account), credit, "withdraw: a failed withdraw changed the credit");
            expectedReverts++;
        }
    }

    /// @notice A worker changes availability/price, leaves, or (re-)registers.
    function workerOp(uint256 who, uint8 kind, uint96 price) external {
        address w = _actor(who);
        price = uint96(_bound(price, 0, 0.02 ether));
        bytes32 key = keccak256(abi.encode("key", who, price));
        vm.prank(w);
        if (kind % 4 == 0) {
            try market.leave() {} catch { expectedReverts++; }
        } else if (kind % 4 == 1) {
            try market.register(key, price, true) {} catch { expectedReverts++; }
        } else {
            try market.update(key, price, kind % 4 == 2) {} catch { expectedReverts++; }
        }
    }

    /// @notice Ether forced into the market by selfdestruct must not disturb the accounting.
    function forceFeed(uint96 amount) external {
        amount = uint96(_bound(amount, 1, 1 ether));
        vm.deal(address(this), address(this).balance + amount);
        ForceFeeder feeder = new ForceFeeder{value: amount}();
        feeder.feed(payable(address(market)));
        ghostForced += amount;
    }

    /// @notice Time passes.
    function warp(uint256 secs) external {
        // mostly short steps (lifecycles progress within windows), sometimes past every window
        vm.warp(block.timestamp + (secs % 8 == 0 ? _bound(secs, 1, MAX_WARP) : _bound(secs, 1, 30)));
    }

    // ================================================================== the rules

    /// @dev Checks a successful call's transition against the protocol and books the money it moved.
    function _settle(uint256 id, ITaskMarket.Task memory b, address caller, Op op) internal {
        ITaskMarket.Task memory a = market.getTask(id);
        _checkTransition(b, a, caller, op);
        successes[uint8(op)]++;

        uint256 toRequester;
        uint256 toProvider;
        uint256 toValidator;
        if (a.status == ITaskMarket.Status.Cancelled) {
            toRequester = uint256(b.price) + b.validatorFee;
        } else if (b.status == ITaskMarket.Status.Validating && a.status == ITaskMarket.Status.Accepted) {
            toValidator = b.validatorFee;
        } else if (a.status == ITaskMarket.Status.Rejected) {
            toRequester = b.price;
            toValidator = b.validatorFee;
        } else if (a.status == ITaskMarket.Status.Completed) {
            toProvider = b.price;
        } else if (a.status == ITaskMarket.Status.Expired) {
            if (b.status == ITaskMarket.Status.AwaitingValidator) {
                toProvider = b.price;
                toRequester = b.validatorFee;
            } else if (b.status == ITaskMarket.Status.Accepted) {
                toProvider = b.price;
            } else {
                toRequester = uint256(b.price) + b.validatorFee; // silent provider or validator
            }
        }
        // conservation: what left the escrow is exactly what was credited
        uint256 escrowBefore = _escrow(b);
        uint256 escrowAfter = _escrow(a);
        if (op == Op.Post) {
            ghostEscrow += escrowAfter;
            openCount++;
        } else {
            assertTrue(escrowAfter <= escrowBefore, "a transition increased a task's escrow");
            assertEq(escrowBefore - escrowAfter, toRequester + toProvider + toValidator, "escrow released != credited");
            ghostEscrow -= escrowBefore - escrowAfter;
            if (b.status.holdsEscrow() && !a.status.holdsEscrow()) openCount--;
        }
        if (a.deadline > maxDeadline) maxDeadline = a.deadline;
        _book(id, b.requester, toRequester, requesterRefunds);
        _book(id, b.provider, toProvider, providerPayouts);
        _book(id, op == Op.Verdict ? caller : b.validator, toValidator, validatorPayouts);
        assertTrue(paidOut[id] <= uint256(b.price) + b.validatorFee, "a task paid out more than its deposit");
    }

    function _book(uint256 id, address to, uint256 amount, mapping(uint256 => uint8) storage count) internal {
        if (amount == 0) return;
        count[id]++;
        assertTrue(count[id] == 1, "a task paid the same party twice");
        ghostCredit[to] += amount;
        entitled[to] += amount;
        paidOut[id] += amount;
    }

    /// @dev The protocol's transition table: (from, to, who, when) of every successful call.
    function _checkTransition(ITaskMarket.Task memory b, ITaskMarket.Task memory a, address caller, Op op)
        internal
        view
    {
        ITaskMarket.Status f = b.status;
        ITaskMarket.Status t = a.status;
        bool beforeDeadline = block.timestamp <= b.deadline;
        bool ok;
        if (op == Op.Post) {
            ok = f == ITaskMarket.Status.None && a.requester == caller
                && t == (a.provider == address(0) ? ITaskMarket.Status.Pending : ITaskMarket.Status.Executing);
        } else if (op == Op.AssignProvider) {
            ok = f == ITaskMarket.Status.Pending && t == ITaskMarket.Status.Executing && caller == b.requester
                && a.provider != b.requester && a.provider != a.validator;
        } else if (op == Op.AssignValidator) {
            ok = t == ITaskMarket.Status.Validating && caller == b.requester
                && (
                    (f == ITaskMarket.Status.AwaitingValidator && beforeDeadline)
                        || (f == ITaskMarket.Status.Validating && !beforeDeadline && a.validator != b.validator)
                ) && a.validator != b.requester && a.validator != b.provider;
        } else if (op == Op.SubmitResult) {
            ok = f == ITaskMarket.Status.Executing && caller == b.provider && beforeDeadline
                && t == (b.validator == address(0) ? ITaskMarket.Status.AwaitingValidator : ITaskMarket.Status.Validating);
        } else if (op == Op.Verdict) {
            ok = f == ITaskMarket.Status.Validating && caller == b.validator && beforeDeadline
                && (t == ITaskMarket.Status.Accepted || t == ITaskMarket.Status.Rejected);
        } else if (op == Op.Finalize) {
            ok = caller == b.requester
                && (
                    (f == ITaskMarket.Status.Accepted && t == ITaskMarket.Status.Completed)
                        || (f == ITaskMarket.Status.Rejected && t == ITaskMarket.Status.Closed)
                );
        } else if (op == Op.Cancel) {
            ok = f == ITaskMarket.Status.Pending && t == ITaskMarket.Status.Cancelled && caller == b.requester;
        } else {
            ok = f.holdsEscrow() && !beforeDeadline && t == ITaskMarket.Status.Expired;
        }
        if (!ok) {
            revert(
                string.concat(
                    "illegal transition ", _str(uint8(f)), " -> ", _str(uint8(t)), " by op ", _str(uint8(op))
                )
            );
        }
        // a task's parties and amounts never change, except a validator named later or replaced
        assertTrue(
            a.requester == b.requester || f == ITaskMarket.Status.None, "requester changed"
        );
        assertTrue(
            (a.price == b.price && a.validatorFee == b.validatorFee) || f == ITaskMarket.Status.None, "amounts changed"
        );
    }

    function _escrow(ITaskMarket.Task memory t) internal pure returns (uint256) {
        if (t.status == ITaskMarket.Status.Accepted) return t.price; // the validator was paid at the verdict
        if (t.status.holdsEscrow()) return uint256(t.price) + t.validatorFee;
        return 0;
    }

    // ================================================================== helpers

    function _actor(uint256 seed) internal view returns (address) {
        return _actors[seed % _actors.length];
    }

    function _task(uint256 seed) internal view returns (uint256) {
        uint256 last = market.lastTaskId();
        if (last == 0) return 0;
        // mostly the latest tasks, so lifecycles get far; sometimes any task
        if (seed % 4 < 2) return last;
        if (seed % 4 == 2 && last > 3) return last - (seed / 4) % 3;
        return 1 + seed % last;
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }

    receive() external payable {}
}

/// @notice Status helpers shared by the handler and the invariants.
library Statuses {
    /// @notice Whether a task in this status still holds escrow (the open-task set).
    function holdsEscrow(ITaskMarket.Status s) internal pure returns (bool) {
        return s >= ITaskMarket.Status.Pending && s <= ITaskMarket.Status.Accepted;
    }
}
