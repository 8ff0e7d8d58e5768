// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Actor} from "./Actor.sol";

/// @title RevertingPayee
/// @notice Test-only attacker: refuses every ether transfer, so any payment pushed to it fails. Its failed
///         withdraw must not block anyone else; it can still recover its credit with withdrawTo.
contract RevertingPayee is Actor {
    /// @notice Always raised when ether is sent here.
    error RevertingPayee__Refused();

    constructor(address market_) Actor(market_) {}

    receive() external payable {
        revert RevertingPayee__Refused();
    }
}
