// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestBase} from "./Vm.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {IRatings} from "../../contracts/interfaces/IRatings.sol";
import {ReentrantPayee} from "../../contracts/test/ReentrantPayee.sol";
import {RevertingPayee} from "../../contracts/test/RevertingPayee.sol";
import {ForceFeeder} from "../../contracts/test/ForceFeeder.sol";

/// @notice The forge invariant campaign's only target: random actors make random (mostly well-formed) calls
///         to the market (protocol v2: trust, collateral, failure reports, verdicts that settle, ratings) and
///         random time jumps happen; providers decline tasks they cannot run and workers publish offers. Every call that succeeds is checked on the spot against the protocol's
///         transition table (who may move a task from which state to which, and when) and the money it moved is
///         booked in a ghost ledger (who is owed what, what is burned, what collateral is held, by rule). Calls
///         the rules say must succeed (expire after a deadline, a due withdraw, a due verdict, ...) are required
///         to succeed. The invariants (TaskMarketInvariants) compare the market with that ledger after every call.
/// @dev Handler functions never revert on expected market reverts (they catch them); a revert here is a finding.
contract MarketHandler is TestBase {
    using Statuses for ITaskMarket.Status;

    enum Op {
        Post,
        AssignProvider,
        SubmitResult,
        ReportFailure,
        Verdict,
        Rate,
        Cancel,
        Expire,
        Decline
    }

    uint256 internal constant BPS = 10_000;

    TaskMarket public immutable market;
    IRatings public immutable ratings;
    ReentrantPayee public immutable reentrant;
    RevertingPayee public immutable reverting;
    /// @notice Where the reverting payee's credit goes (withdrawTo).
    address public constant SINK = address(0x51A4);
    uint256 public constant MAX_WARP = 400;

    address[] internal _actors;

    // ------------------------------------------------------------ ghost ledger
    mapping(address account => uint256) public ghostCredit;
    /// @notice Escrow (price + fee) the open tasks should hold, by rule.
    uint256 public ghostEscrow;
    /// @notice Collateral the Validating tasks should hold, by rule.
    uint256 public ghostCollateral;
    /// @notice Wei burned, by rule.
    uint256 public ghostBurned;
    /// @notice Ether pushed in by selfdestruct (owned by nobody, must never be paid out as credit).
    uint256 public ghostForced;
    /// @notice Wei each account actually received from withdraw/withdrawTo.
    mapping(address account => uint256) public received;
    /// @notice Every wei ever credited to each account, by rule (its rightful total).
    mapping(address account => uint256) public entitled;
    /// @notice Missed verdicts per validator, by rule.
    mapping(address account => uint256) public ghostMissed;
    mapping(uint256 taskId => bytes32) public resultOf;
    uint256[] internal _committedTasks;
    /// @notice Tasks that reached Completed or Failed (the ones a requester may rate once).
    uint256[] internal _rateable;
    uint256 public openCount;
    uint256 public maxDeadline;

    // ------------------------------------------------------------ call statistics (for the report)
    mapping(uint8 op => uint256) public successes;
    uint256 public expectedReverts;
    /// @notice Successful commits of a hash already committed on another task (bound to their own task only).
    uint256 public copierReplays;
    /// @notice Posts and assignments refused because the provider does not trust the validator (1a).
    uint256 public untrustedRefusals;
    /// @notice Offers published (each checked on the spot: hash and block in the record, document in the log).
    uint256 public offersPublished;

    // ------------------------------------------------------------ the offers, by rule
    /// @notice keccak256 of each worker's current offer (zero: none, or cleared by leave).
    mapping(address worker => bytes32) public ghostOfferHash;
    /// @notice Block of each worker's current offer (0: none).
    mapping(address worker => uint256) public ghostOfferBlock;

    constructor(TaskMarket market_, ReentrantPayee reentrant_, RevertingPayee reverting_) {
        market = market_;
        ratings = market_.ratings();
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
        // most pairs trust each other; a quarter do not, so untrusted posts (1a) are tried and refused
        for (uint256 i = 0; i < _actors.length; i++) {
            for (uint256 j = 0; j < _actors.length; j++) {
                if (i == j || (i + j) % 4 == 0) continue;
                vm.prank(_actors[i]);
                market.setTrust(_actors[j], true);
            }
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

    /// @notice A requester posts a task naming a validator, and a provider now or later.
    function post(uint256 who, uint256 prov, uint256 val, uint96 price, uint96 fee, uint24 timeout) external {
        // Mostly well-formed (so lifecycles get far), about one in ten ill-formed on purpose.
        address requester = _actor(who);
        uint256 n = _actors.length;
        address provider = prov % 3 == 0 ? address(0) : _actors[(who % n + 1 + (prov / 3) % (n - 1)) % n];
        address validator = _actors[(who % n + 1 + (val / 3) % (n - 1)) % n];
        if (prov % 10 == 1) provider = requester; // refused: InvalidProvider
        if (val % 17 == 1) validator = address(0); // refused: a validator is required
        // at least any asking price (<= 0.007 ether), except sometimes below it (M5 for the fee)
        price = uint96(price % 10 == 0 ? _bound(price, 0, 0.01 ether) : _bound(price, 0.01 ether, 2 ether));
        fee = uint96(fee % 8 == 0 ? _bound(fee, 0, 0.01 ether) : _bound(fee, 0.01 ether, 0.5 ether));
        timeout = uint24(timeout % 10 == 0 ? _bound(timeout, 0, 400) : _bound(timeout, 10, 300));
        uint256 deposit = uint256(price) + fee;
        vm.deal(requester, requester.balance + deposit);
        uint256 id = market.lastTaskId() + 1;
        ITaskMarket.Task memory b = market.getTask(id);
        bool untrusted = provider != address(0) && validator != address(0) && !market.trusts(provider, validator);
        ITaskMarket.Terms memory terms = ITaskMarket.Terms({
            provider: provider, validator: validator, price: price, validatorFee: fee, timeout: timeout
        });
        vm.prank(requester);
        try market.post{value: deposit}(keccak256(abi.encode(id)), terms, "") returns (uint256 got) {
            assertEq(got, id, "post: task ids are sequential");
            assertTrue(!untrusted, "post: a provider was paired with a validator it does not trust");
            _settle(id, b, requester, Op.Post);
        } catch {
            if (untrusted) untrustedRefusals++;
            _refused();
        }
    }

    /// @notice The requester (or someone else) names the provider of a pending task.
    function assignProvider(uint256 task, uint256 who, uint256 prov) external {
        uint256 id = _pick(task, ITaskMarket.Status.Pending);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        address provider = _actor(prov);
        bool untrusted = b.validator != address(0) && !market.trusts(provider, b.validator);
        vm.prank(caller);
        try market.assignProvider(id, provider, "") {
            assertTrue(!untrusted, "assignProvider: paired with an untrusted validator");
            _settle(id, b, caller, Op.AssignProvider);
        } catch {
            if (untrusted) untrustedRefusals++;
            _refused();
        }
    }

    /// @notice A provider's trusted set changes (tasks already running keep their validator).
    function setTrust(uint256 who, uint256 val, bool trusted) external {
        address provider = _actor(who);
        address validator = _actor(val);
        vm.prank(provider);
        try market.setTrust(validator, trusted) {
            assertTrue(market.trusts(provider, validator) == trusted, "setTrust: not recorded");
        } catch {
            assertTrue(provider == validator, "setTrust: refused for another address");
            _refused();
        }
    }

    /// @notice The provider (or someone else) commits a result with collateral (sometimes the wrong amount), or
    ///         a copier replays another task's commitment.
    function submitResult(uint256 task, uint256 who, uint256 seed, bool copy) external {
        uint256 id = _pick(task, ITaskMarket.Status.Executing);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.provider;
        bool replay = copy && seed % 4 == 0 && _committedTasks.length != 0; // a copier, one time in eight
        uint256 source = replay ? _committedTasks[seed % _committedTasks.length] : 0;
        bytes32 h = replay ? resultOf[source] : keccak256(abi.encode("result", id, seed));
        uint256 collateral = _collateral(b);
        bool wrongValue = seed % 13 == 1;
        uint256 value = wrongValue ? collateral + 1 : collateral;
        // the commitment is per task: a hash committed on another task neither blocks nor binds this one
        bool mustWork = caller == b.provider && b.status == ITaskMarket.Status.Executing
            && block.timestamp <= b.deadline && !wrongValue && caller != address(0);
        if (caller != address(0)) vm.deal(caller, caller.balance + value);
        vm.prank(caller);
        try market.submitResult{value: value}(id, h, "") {
            assertTrue(market.resultOf(id) == bytes32(uint256(h) >> 64 << 64), "submitResult: the commitment was not recorded");
            assertTrue(!wrongValue, "submitResult: the wrong collateral was taken");
            if (replay) {
                copierReplays++;
                // the source's commitment shows while it is Validating (its open-task slot holds it)
                bytes32 shown = market.resultOf(source);
                assertTrue(shown == 0 || shown == bytes32(uint256(h) >> 64 << 64), "submitResult: a replay moved the source task's commitment");
            }
            resultOf[id] = h;
            _committedTasks.push(id);
            _settle(id, b, caller, Op.SubmitResult);
        } catch {
            assertTrue(!mustWork, "submitResult: the provider's result was refused");
            _refused();
        }
    }

    /// @notice The provider (or someone else) reports a failing run (sometimes with an invalid report).
    function reportFailure(uint256 task, uint256 who, uint16 length) external {
        uint256 id = _pick(task, ITaskMarket.Status.Executing);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.provider;
        length = uint16(length % 16 == 0 ? _bound(length, 0, 1100) : _bound(length, 1, 64));
        bool mustWork = caller == b.provider && caller != address(0) && b.status == ITaskMarket.Status.Executing
            && block.timestamp <= b.deadline && length >= 1 && length <= 1024;
        vm.prank(caller);
        try market.reportFailure(id, new bytes(length)) {
            assertTrue(length >= 1 && length <= 1024, "reportFailure: an invalid report was taken");
            _settle(id, b, caller, Op.ReportFailure);
        } catch {
            assertTrue(!mustWork, "reportFailure: the provider's report was refused");
            _refused();
        }
    }

    /// @notice The provider (or someone else) declines a task it cannot run (sometimes with an invalid reason);
    ///         mostly an Executing task, sometimes any (a Pending, Validating or settled one must be refused).
    function decline(uint256 task, uint256 who, uint16 length) external {
        uint256 id = _pick(task, ITaskMarket.Status.Executing);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.provider;
        length = uint16(length % 16 == 0 ? _bound(length, 0, 1100) : _bound(length, 1, 64));
        bool mustWork = caller == b.provider && caller != address(0) && b.status == ITaskMarket.Status.Executing
            && block.timestamp <= b.deadline && length >= 1 && length <= 1024;
        uint256 before = market.creditOf(b.requester);
        vm.prank(caller);
        try market.decline(id, new bytes(length)) {
            assertTrue(length >= 1 && length <= 1024, "decline: an invalid reason was taken");
            assertEq(market.creditOf(b.requester) - before, uint256(b.price) + b.validatorFee, "decline: refund");
            _settle(id, b, caller, Op.Decline);
        } catch {
            assertTrue(!mustWork, "decline: the provider's due decline was refused");
            _refused();
        }
    }

    /// @notice A worker (or a stranger, or a worker that left) publishes an offer (sometimes empty or too long).
    function publishOffer(uint256 who, uint16 length, bytes32 salt) external {
        address w = who % 8 == 7 ? address(uint160(0xBEEF0000 + who % 1000)) : _actor(who);
        length = uint16(length % 8 == 0 ? _bound(length, 0, 2100) : _bound(length, 1, 300));
        bytes memory offer = new bytes(length);
        if (length != 0) offer[0] = salt[0]; // documents differ, so a new offer has a new hash
        if (length > 1) offer[length - 1] = salt[1];
        bool registered = market.getWorker(w).registered;
        bool mustWork = registered && length >= 1 && length <= 2048;
        vm.prank(w);
        try market.publishOffer(offer) {
            assertTrue(mustWork, "publishOffer: taken from a non-worker or with an invalid document");
            ITaskMarket.Worker memory rec = market.getWorker(w);
            assertTrue(rec.offerHash == keccak256(offer), "publishOffer: the record's hash is not the document's");
            assertEq(rec.offerBlock, block.number, "publishOffer: the record's block is not the event's");
            ghostOfferHash[w] = rec.offerHash;
            ghostOfferBlock[w] = block.number;
            offersPublished++;
        } catch {
            assertTrue(!mustWork, "publishOffer: a worker's valid offer was refused");
            _refused();
        }
    }

    /// @notice The validator (or someone else) judges the committed result (or a wrong one).
    function submitVerdict(uint256 task, uint256 who, bool accept, bool wrongHash) external {
        uint256 id = _pick(task, ITaskMarket.Status.Validating);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.validator;
        wrongHash = wrongHash && who % 4 == 1; // one time in eight
        bytes32 h = wrongHash ? keccak256(abi.encode("wrong", id)) : resultOf[id];
        bool mustWork = caller == b.validator && b.status == ITaskMarket.Status.Validating
            && block.timestamp <= b.deadline && !wrongHash;
        vm.prank(caller);
        try market.submitVerdict(id, h, accept, "requester locator") {
            assertTrue(h == resultOf[id] && h != 0, "submitVerdict: a verdict on another commitment was taken");
            _settle(id, b, caller, Op.Verdict);
        } catch {
            assertTrue(!mustWork, "submitVerdict: the validator's due verdict was refused");
            _refused();
        }
    }

    /// @notice The requester (or someone else) rates a task (sometimes with invalid ratings).
    function rate(uint256 task, uint256 who, uint8 providerRating, uint8 validatorRating) external {
        // mostly a task that was Completed or Failed (maybe rated already), sometimes any task
        uint256 id = task % 4 != 0 && _rateable.length != 0 ? _rateable[(task / 4) % _rateable.length] : _task(task);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        providerRating = uint8(providerRating % 10 == 0 ? _bound(providerRating, 0, 6) : _bound(providerRating, 1, 5));
        bool failed = b.status == ITaskMarket.Status.Failed;
        // a failed task's validator is not rated; sometimes the handler tries anyway (refused)
        validatorRating = uint8(
            failed && validatorRating % 5 != 0 ? 0 : (validatorRating % 10 == 0 ? _bound(validatorRating, 0, 6) : _bound(validatorRating, 0, 5))
        );
        bool ratingsValid =
            providerRating >= 1 && providerRating <= 5 && validatorRating <= 5 && (!failed || validatorRating == 0);
        bool mustWork = caller == b.requester && ratingsValid
            && (b.status == ITaskMarket.Status.Completed || b.status == ITaskMarket.Status.Failed);
        IRatings.Record memory pBefore = ratings.recordOf(b.provider, IRatings.Role.Provider);
        IRatings.Record memory vBefore = ratings.recordOf(b.validator, IRatings.Role.Validator);
        vm.prank(caller);
        try market.rate(id, providerRating, validatorRating) {
            assertTrue(ratingsValid, "rate: invalid ratings taken");
            // each rating weighs exactly the gwei the task paid the rated party
            uint256 providerPaid = failed ? _failurePaid(b.price) : b.price - b.price * 100 / BPS;
            IRatings.Record memory pAfter = ratings.recordOf(b.provider, IRatings.Role.Provider);
            assertEq(pAfter.count, pBefore.count + 1, "rate: provider count");
            assertEq(pAfter.weightGwei, pBefore.weightGwei + providerPaid / 1 gwei, "rate: provider weight != paid");
            IRatings.Record memory vAfter = ratings.recordOf(b.validator, IRatings.Role.Validator);
            uint256 validatorPaid = b.validatorFee - b.validatorFee * 100 / BPS;
            uint256 rated = validatorRating == 0 ? 0 : 1;
            assertEq(vAfter.count, vBefore.count + rated, "rate: validator count");
            assertEq(vAfter.weightGwei, vBefore.weightGwei + rated * (validatorPaid / 1 gwei), "rate: validator weight");
            _settle(id, b, caller, Op.Rate);
        } catch {
            assertTrue(!mustWork, "rate: the requester's due rating was refused");
            _refused();
        }
    }

    /// @notice The requester (or someone else) cancels.
    function cancel(uint256 task, uint256 who) external {
        uint256 id = _pick(task, ITaskMarket.Status.Pending);
        if (id == 0) return;
        ITaskMarket.Task memory b = market.getTask(id);
        address caller = who % 4 == 0 ? _actor(who / 4) : b.requester;
        bool mustWork = caller == b.requester && b.status == ITaskMarket.Status.Pending;
        vm.prank(caller);
        try market.cancel(id) {
            _settle(id, b, caller, Op.Cancel);
        } catch {
            assertTrue(!mustWork, "cancel: the requester's cancel of a pending task was refused");
            _refused();
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
            _refused();
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
            _refused();
        }
    }

    /// @notice A worker changes availability/price, leaves, or (re-)registers.
    function workerOp(uint256 who, uint8 kind, uint96 price) external {
        // hashed: the fuzzer's dictionary favours 0, which would otherwise pick the same branch every time
        uint256 r = uint256(keccak256(abi.encode(who, kind, price))) % 16;
        address w = _actor(who);
        if (r >= 2 && r < 8) {
            // a comeback: the first worker that left, if any (so most workers stay registered for new tasks)
            for (uint256 i = 0; i < _actors.length; i++) {
                if (!market.getWorker(_actors[i]).registered) {
                    w = _actors[i];
                    break;
                }
            }
        }
        price = uint96(_bound(price, 0, 0.007 ether)); // like the initial asking prices, mostly below the offers
        bytes32 key = keccak256(abi.encode("key", who, price));
        uint32 missed = market.getWorker(w).missed;
        vm.prank(w);
        if (r == 0) {
            try market.leave() {
                ghostOfferHash[w] = bytes32(0);
                ghostOfferBlock[w] = 0;
            } catch {
                _refused();
            }
        } else if (r < 8) {
            try market.register(key, price, true) {} catch { _refused(); }
        } else {
            try market.update(key, price, r != 1 && r != 8) {} catch { _refused(); }
        }
        assertEq(market.getWorker(w).missed, missed, "a worker's missed record changed outside expire");
        // an offer lives until the worker replaces it or leaves; registering and updating keep it
        assertTrue(market.getWorker(w).offerHash == ghostOfferHash[w], "workerOp: the offer hash changed");
        assertEq(market.getWorker(w).offerBlock, ghostOfferBlock[w], "workerOp: the offer block changed");
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
        vm.roll(block.number + 1); // so offers land in different blocks
    }

    // ================================================================== the rules

    /// @notice What one transition moved: out of the escrow and the collateral, into credits and the burn.
    struct Flow {
        uint256 toRequester;
        uint256 toProvider;
        uint256 toValidator;
        uint256 burn;
        uint256 escrowOut;
        uint256 collateralOut;
    }

    /// @dev Checks a successful call's transition against the protocol and books the money it moved.
    function _settle(uint256 id, ITaskMarket.Task memory b, address caller, Op op) internal {
        ITaskMarket.Task memory a = market.getTask(id);
        _checkTransition(b, a, caller, op);
        successes[uint8(op)]++;
        if (op == Op.Post) {
            ghostEscrow += uint256(a.price) + a.validatorFee; // b is the empty task before the post
            openCount++;
        } else if (op == Op.SubmitResult) {
            ghostCollateral += _collateral(b); // paid in by the provider
        }
        Flow memory m = _flow(b, a.status, op);
        // conservation: what left the escrow and the collateral is exactly what was credited or burned
        assertEq(
            m.escrowOut + m.collateralOut,
            m.toRequester + m.toProvider + m.toValidator + m.burn,
            "released != credited + burned"
        );
        ghostEscrow -= m.escrowOut;
        ghostCollateral -= m.collateralOut;
        ghostBurned += m.burn;
        // a task leaves the open set when it settles, whatever it held (a free task holds 0 wei)
        if (Statuses.holdsEscrow(b.status) && !Statuses.holdsEscrow(a.status)) openCount--;
        if (a.deadline > maxDeadline) maxDeadline = a.deadline;
        if (a.status == ITaskMarket.Status.Completed || a.status == ITaskMarket.Status.Failed) _rateable.push(id);
        _book(b.requester, m.toRequester);
        _book(b.provider, m.toProvider);
        _book(b.validator, m.toValidator);
        assertEq(market.burned(), ghostBurned, "burned != ledger");
    }

    /// @dev The money rules of protocol v2, per transition (b: the task before, s: its status after).
    function _flow(ITaskMarket.Task memory b, ITaskMarket.Status s, Op op) internal returns (Flow memory m) {
        if (op == Op.Post || op == Op.SubmitResult || op == Op.AssignProvider || op == Op.Rate) return m;
        uint256 price = b.price;
        uint256 fee = b.validatorFee;
        uint256 collateral = _collateral(b);
        uint256 validatorPaid = fee - fee * 100 / BPS;
        m.escrowOut = price + fee; // every other transition settles the task
        if (s == ITaskMarket.Status.Failed) {
            m.toProvider = _failurePaid(price);
            m.burn = (price * 1000 / BPS) * 100 / BPS;
            m.toRequester = price + fee - m.toProvider - m.burn;
        } else if (s == ITaskMarket.Status.Completed) {
            m.collateralOut = collateral;
            m.toProvider = price - price * 100 / BPS + collateral;
            m.toValidator = validatorPaid;
            m.burn = price * 100 / BPS + fee * 100 / BPS;
        } else if (s == ITaskMarket.Status.Rejected) {
            m.collateralOut = collateral;
            m.toRequester = price + fee;
            m.toValidator = validatorPaid;
            m.burn = collateral - validatorPaid;
        } else {
            // Cancelled, Declined, or Expired: the requester gets price + fee back
            m.toRequester = price + fee;
            if (b.status == ITaskMarket.Status.Validating) {
                // a silent validator: the provider's collateral back, a missed verdict on the validator's record
                m.collateralOut = collateral;
                m.toProvider = collateral;
                ghostMissed[b.validator]++;
                assertEq(market.getWorker(b.validator).missed, ghostMissed[b.validator], "missed verdict not counted");
            }
        }
    }

    function _book(address to, uint256 amount) internal {
        if (amount == 0) return;
        ghostCredit[to] += amount;
        entitled[to] += amount;
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
            ok = f == ITaskMarket.Status.None && a.requester == caller && a.validator != address(0)
                && a.validator != caller && a.provider != caller && a.provider != a.validator
                && market.getWorker(a.validator).price <= a.validatorFee
                && (a.provider == address(0) || market.trusts(a.provider, a.validator))
                && t == (a.provider == address(0) ? ITaskMarket.Status.Pending : ITaskMarket.Status.Executing);
        } else if (op == Op.AssignProvider) {
            ok = f == ITaskMarket.Status.Pending && t == ITaskMarket.Status.Executing && caller == b.requester
                && a.provider != b.requester && a.provider != a.validator && market.trusts(a.provider, a.validator);
        } else if (op == Op.SubmitResult) {
            ok = f == ITaskMarket.Status.Executing && caller == b.provider && beforeDeadline
                && t == ITaskMarket.Status.Validating;
        } else if (op == Op.ReportFailure) {
            ok = f == ITaskMarket.Status.Executing && caller == b.provider && beforeDeadline
                && t == ITaskMarket.Status.Failed;
        } else if (op == Op.Verdict) {
            ok = f == ITaskMarket.Status.Validating && caller == b.validator && beforeDeadline
                && (t == ITaskMarket.Status.Completed || t == ITaskMarket.Status.Rejected);
        } else if (op == Op.Rate) {
            ok = caller == b.requester && t == ITaskMarket.Status.Rated
                && (f == ITaskMarket.Status.Completed || f == ITaskMarket.Status.Failed);
        } else if (op == Op.Cancel) {
            ok = f == ITaskMarket.Status.Pending && t == ITaskMarket.Status.Cancelled && caller == b.requester;
        } else if (op == Op.Decline) {
            ok = f == ITaskMarket.Status.Executing && caller == b.provider && beforeDeadline
                && t == ITaskMarket.Status.Declined;
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
        // a task's parties and amounts never change (a provider is named once, while pending)
        if (f != ITaskMarket.Status.None) {
            assertTrue(a.requester == b.requester && a.validator == b.validator, "parties changed");
            assertTrue(a.provider == b.provider || f == ITaskMarket.Status.Pending, "provider changed");
            assertTrue(a.price == b.price && a.validatorFee == b.validatorFee, "amounts changed");
        }
    }

    function _collateral(ITaskMarket.Task memory t) internal pure returns (uint256) {
        return uint256(t.validatorFee) + uint256(t.price) * 1000 / BPS;
    }

    function _failurePaid(uint256 price) internal pure returns (uint256) {
        uint256 failureFee = price * 1000 / BPS;
        return failureFee - failureFee * 100 / BPS;
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

    /// @notice Expected refusals per handler function (by selector), for the report.
    mapping(bytes4 selector => uint256) public refusedIn;

    function _refused() internal {
        expectedReverts++;
        refusedIn[msg.sig]++;
    }

    /// @dev Mostly an open task in `want` (so lifecycles get far), sometimes any task (so wrong states are tried).
    function _pick(uint256 seed, ITaskMarket.Status want) internal view returns (uint256) {
        if (seed % 4 != 0) {
            (uint256[] memory ids,) = market.tasksInStatus(want, 0, 64);
            if (ids.length != 0) return ids[(seed / 4) % ids.length];
        }
        return _task(seed);
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
        return s >= ITaskMarket.Status.Pending && s <= ITaskMarket.Status.Validating;
    }
}
