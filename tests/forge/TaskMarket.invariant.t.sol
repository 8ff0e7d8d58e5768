// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestBase, console} from "./Vm.sol";
import {MarketHandler, Statuses} from "./MarketHandler.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {ReentrantPayee} from "../../contracts/test/ReentrantPayee.sol";
import {RevertingPayee} from "../../contracts/test/RevertingPayee.sol";

/// @notice The deep campaign (tools/audit.sh: 256 runs x 500 calls): after every handler call the market must
///         agree with the ghost ledger (balance == open escrow + collateral of Validating tasks + credits + burned
///         + force-fed), and at the end of every run, once all deadlines have passed, permissionless calls must hand
///         every wei to its rightful owner, leaving only the burn and the force-fed ether.
contract TaskMarketInvariants is TestBase {
    using Statuses for ITaskMarket.Status;

    TaskMarket internal market;
    MarketHandler internal handler;
    ReentrantPayee internal reentrant;
    RevertingPayee internal reverting;

    function setUp() public {
        // short windows so that random time jumps (1..400 s) cross every deadline often
        market = new TaskMarket(100, 10, 300);
        reentrant = new ReentrantPayee(address(market));
        reverting = new RevertingPayee(address(market));
        handler = new MarketHandler(market, reentrant, reverting);
    }

    /// @notice Only the handler is fuzzed (its actors call the market).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice Checked after every call: solvency, the ledger, the pools, no successful re-entry.
    function invariant_marketMatchesLedger() public view {
        address[] memory actors = handler.actors();
        uint256 credits;
        for (uint256 i = 0; i < actors.length; i++) {
            uint256 c = market.creditOf(actors[i]);
            assertEq(c, handler.ghostCredit(actors[i]), "credit != ledger");
            credits += c;
        }
        // balance == open escrows + collateral of Validating tasks + unwithdrawn credits + burned
        // (+ ether forced in by selfdestruct, owned by nobody)
        assertEq(
            address(market).balance,
            handler.ghostEscrow() + handler.ghostCollateral() + credits + handler.ghostBurned() + handler.ghostForced(),
            "balance != escrow + collateral + credits + burned + forced"
        );
        assertEq(market.burned(), handler.ghostBurned(), "burned != ledger");
        // the open-task pool is exactly the set of tasks holding escrow, and holds what the ledger says
        uint256 open = market.openTaskCount();
        assertEq(open, handler.openCount(), "open-task count");
        uint256[] memory ids = market.openTasks(0, open);
        uint256 escrow;
        uint256 collateral;
        for (uint256 i = 0; i < ids.length; i++) {
            ITaskMarket.Task memory t = market.getTask(ids[i]);
            assertTrue(t.status.holdsEscrow(), "a settled task is in the open pool");
            assertEq(t.poolIndex, i, "pool index");
            escrow += uint256(t.price) + t.validatorFee;
            if (t.status == ITaskMarket.Status.Validating) collateral += market.collateralFor(t.price, t.validatorFee);
        }
        assertEq(escrow, handler.ghostEscrow(), "sum of open escrows != ledger");
        assertEq(collateral, handler.ghostCollateral(), "sum of Validating collateral != ledger");
        // the available-worker pool is exactly the available workers
        uint256 available;
        for (uint256 i = 0; i < actors.length; i++) {
            if (market.getWorker(actors[i]).available) available++;
        }
        assertEq(market.availableWorkerCount(), available, "available-worker count");
        // every worker's offer is the last one it published since it last left (hash and block), or none
        for (uint256 i = 0; i < actors.length; i++) {
            ITaskMarket.Worker memory w = market.getWorker(actors[i]);
            assertTrue(w.offerHash == handler.ghostOfferHash(actors[i]), "offer hash != ledger");
            assertEq(w.offerBlock, handler.ghostOfferBlock(actors[i]), "offer block != ledger");
            assertTrue(w.registered || w.offerHash == bytes32(0), "a worker that left kept its offer");
        }
        assertEq(reentrant.successes(), 0, "a re-entrant withdraw succeeded");
    }

    /// @notice End of every run: after all deadlines, outsiders settle every task and everyone withdraws;
    ///         each account gets exactly what the rules gave it, and only the forced-in ether stays.
    function afterInvariant() public {
        vm.warp(block.timestamp + handler.maxDeadline() + 1);
        uint256 last = market.lastTaskId();
        for (uint256 id = 1; id <= last; id++) {
            // an outsider's expire, checked and booked by the handler (which requires it to succeed)
            if (market.getTask(id).status.holdsEscrow()) handler.expireTask(id);
        }
        assertEq(market.openTaskCount(), 0, "tasks still open after all deadlines");

        address[] memory actors = handler.actors();
        address sink = address(0x51A4F);
        for (uint256 i = 0; i < actors.length; i++) {
            address a = actors[i];
            uint256 credit = market.creditOf(a);
            assertEq(credit, handler.ghostCredit(a), "credit after the sweep != what the rules give");
            if (credit == 0) continue;
            if (a == address(reverting)) {
                // its own withdraw can never work; it must still be able to send its credit elsewhere
                vm.prank(a);
                vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TransferFailed.selector, a, credit));
                market.withdraw();
                uint256 before = sink.balance;
                vm.prank(a);
                market.withdrawTo(payable(sink));
                assertEq(sink.balance - before, credit, "withdrawTo paid the wrong amount");
            } else {
                uint256 before = a.balance;
                vm.prank(a);
                market.withdraw();
                assertEq(a.balance - before, credit, "withdraw paid the wrong amount");
            }
        }
        for (uint256 i = 0; i < actors.length; i++) {
            address a = actors[i];
            assertEq(market.creditOf(a), 0, "credit left after withdraw");
            // everything the rules gave this account reached it: by earlier withdraws or just now
            assertEq(handler.entitled(a), handler.received(a) + handler.ghostCredit(a), "ledger mismatch");
        }
        assertEq(
            address(market).balance,
            handler.ghostForced() + market.burned(),
            "ether left in the market beyond the burn and the forced-in"
        );
        assertEq(handler.ghostCollateral(), 0, "collateral left after the sweep");
        // what the run reached (forge test -vv): successful calls per operation, refused calls
        string[9] memory ops = [
            "post", "assignProvider", "submitResult", "reportFailure", "verdict", "rate", "cancel", "expire", "decline"
        ];
        for (uint8 i = 0; i < 9; i++) {
            console.log(ops[i], handler.successes(i));
        }
        console.log("refused calls", handler.expectedReverts());
        console.log("  refused posts", handler.refusedIn(MarketHandler.post.selector));
        console.log("  refused results", handler.refusedIn(MarketHandler.submitResult.selector));
        console.log("  refused verdicts", handler.refusedIn(MarketHandler.submitVerdict.selector));
        console.log("  refused ratings", handler.refusedIn(MarketHandler.rate.selector));
        console.log("  refused expiries", handler.refusedIn(MarketHandler.expire.selector));
        console.log("  refused withdrawals", handler.refusedIn(MarketHandler.withdraw.selector));
        console.log("  refused worker ops", handler.refusedIn(MarketHandler.workerOp.selector));
        console.log("  refused declines", handler.refusedIn(MarketHandler.decline.selector));
        console.log("  refused offers", handler.refusedIn(MarketHandler.publishOffer.selector));
        console.log("offers published", handler.offersPublished());
        console.log("copier replays (own task only)", handler.copierReplays());
        console.log("untrusted pairings refused", handler.untrustedRefusals());
        console.log("burned", market.burned());
    }
}
