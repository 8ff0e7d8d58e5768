// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title ForceFeeder
/// @notice Test-only attacker: pushes ether into a contract that has no payable entry for it, through
///         selfdestruct (since Cancun it only moves the balance, which is all the attack needs).
contract ForceFeeder {
    constructor() payable {}

    /// @notice Send this contract's whole balance to `target`, bypassing its code.
    /// @param target The contract to force-feed.
    function feed(address payable target) external {
        selfdestruct(target);
    }
}
